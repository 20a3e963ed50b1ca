//! An OCI distribution (Docker Registry HTTP API v2) client: what kiln needs to publish images.
//!
//! Digests come from the registry, never from the local engine: a registry may re-encode a pushed
//! manifest (schema conversion, compression), and what a deployment pulls is what the registry
//! serves. So after a push kiln asks the registry:
//!
//! * `HEAD /v2/<repo>/manifests/<tag>` with all four manifest media types in `Accept` (OCI and
//!   Docker, image and index/list) and reads `Docker-Content-Digest`; when a registry leaves the
//!   header out, a `GET` and the SHA-256 of the body it returned;
//! * the manifest itself (`GET`), following an image index / manifest list to its platforms;
//! * the config blob, for labels, architecture and OS.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: `Basic` (htpasswd) sends
//! the credentials; `Bearer` fetches a token from the challenge's `realm` (with `service` and
//! `scope`), sending the credentials as Basic to the token endpoint, and caches it per scope. Once
//! a registry has asked for Basic, later requests send it up front (one round trip per lookup
//! instead of two). Registries marked insecure are spoken to over plain HTTP.
//!
//! Errors name the registry and the image and say what to do; they never contain credentials
//! (the password lives in [`Credentials`], whose `Debug` is redacted, and is only ever put into an
//! `Authorization` header).
//!
//! Where this runs: on the controller (kiln's modules run there and reach hosts through the
//! agent). See `push.rs` for why digests are read from the controller and not from the builder.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

mod retag;

/// The manifest media types kiln accepts, most specific first.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header: all four manifest types.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A registry login. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    password: zeroize::Zeroizing<String>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: zeroize::Zeroizing::new(password.into()),
        }
    }
    /// The password, for the one place that needs it (an `Authorization` header, an engine's stdin).
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, ********)", self.username)
    }
}

/// What went wrong talking to a registry. Every message names the registry (and the image when
/// there is one) and what to do; none carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: cannot connect ({detail}); check that it runs and that `kolla_docker_registry` is right{hint}")]
    Connect {
        registry: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "registry {registry}: {image} not found (HTTP 404); was it pushed under this name and tag?"
    )]
    NotFound { registry: String, image: String },
    #[error("registry {registry}: {image}: authentication failed (HTTP {status}); check `kolla_docker_registry_username` and `kolla_docker_registry_password` in the vault{detail}")]
    Auth {
        registry: String,
        image: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry}: {image}: HTTP {status} {detail}")]
    Status {
        registry: String,
        image: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry}: {image}: malformed answer: {detail}; is this an OCI distribution (v2) registry?")]
    Malformed {
        registry: String,
        image: String,
        detail: String,
    },
    #[error("image reference {reference:?}: {detail}")]
    Reference { reference: String, detail: String },
}

/// `registry/repository:tag` or `…@sha256:…`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    /// `namespace/name`.
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

impl ImageRef {
    /// Parse a full reference. The first component must be a registry (contains `.` or `:` or is
    /// `localhost`), as in every reference kolla-build produces with `--registry`.
    pub fn parse(s: &str) -> Result<ImageRef, RegistryError> {
        let bad = |d: &str| RegistryError::Reference {
            reference: s.to_string(),
            detail: d.to_string(),
        };
        let (host, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("expected registry/repository:tag"))?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "the first component must be a registry host (host:port/…)",
            ));
        }
        let (repo, reference) = if let Some((r, d)) = rest.split_once('@') {
            (r, d)
        } else {
            match rest.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, t),
                _ => (rest, "latest"),
            }
        };
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(bad("repository must be lowercase [a-z0-9._-] components"));
        }
        if reference.is_empty() {
            return Err(bad("empty tag"));
        }
        Ok(ImageRef {
            registry: host.to_string(),
            repository: repo.to_string(),
            reference: reference.to_string(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.contains(':') {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{}{}",
            self.registry, self.repository, sep, self.reference
        )
    }
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub digest: String,
    pub body: Vec<u8>,
}

/// One platform of an image (the only one, or one entry of an index).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What kiln records about a pushed image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The digest of the manifest (or index) the tag points to.
    pub digest: String,
    pub media_type: String,
    /// One entry per platform (an index lists several).
    pub platforms: Vec<Platform>,
    /// Labels of the (first platform's) config.
    pub labels: indexmap::IndexMap<String, String>,
    /// Layer digests of the (first platform's) image.
    pub layers: Vec<String>,
    /// Digest of the (first platform's) config blob.
    pub config: String,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Default)]
struct ConfigDoc {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<ConfigInner>,
}

#[derive(Deserialize, Default)]
struct ConfigInner {
    #[serde(rename = "Labels", default)]
    labels: Option<indexmap::IndexMap<String, String>>,
}

/// How to authenticate to this registry, learnt from its first challenge.
#[derive(Clone, Debug)]
enum AuthMode {
    Unknown,
    Anonymous,
    Basic,
    Bearer,
}

/// A client for one registry.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    base: String,
    insecure: bool,
    creds: Option<Credentials>,
    mode: Mutex<AuthMode>,
    tokens: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// A `sha256:` digest of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        || d.strip_prefix("sha512:")
            .is_some_and(|h| h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parse a `WWW-Authenticate` value: the scheme and its `key="value"` parameters.
pub fn parse_challenge(h: &str) -> Option<(String, HashMap<String, String>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, r) = s.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        let r = r.trim_start();
        let (v, r) = if let Some(r) = r.strip_prefix('"') {
            let mut out = String::new();
            let mut it = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = it.next() {
                            out.push(n)
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &r[end?..])
        } else {
            let e = r.find(',').unwrap_or(r.len());
            (r[..e].trim().to_string(), &r[e..])
        };
        params.insert(k, v);
        s = r.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl RegistryClient {
    /// A client for `registry` (`host[:port]`); `insecure` speaks plain HTTP.
    pub fn new(
        registry: &str,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| RegistryError::Connect {
                registry: registry.to_string(),
                detail: e.to_string(),
                hint: "",
            })?;
        let scheme = if insecure { "http" } else { "https" };
        Ok(RegistryClient {
            http,
            registry: registry.to_string(),
            base: format!("{scheme}://{registry}"),
            insecure,
            creds,
            mode: Mutex::new(AuthMode::Unknown),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn connect_err(&self, e: &reqwest::Error) -> RegistryError {
        // reqwest's message names the URL (no credentials: they travel only in headers).
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        let hint = if self.insecure {
            "; if it serves HTTPS, remove it from the insecure registries"
        } else {
            "; if it serves plain HTTP, mark it insecure (`docker_registry_insecure: true`)"
        };
        RegistryError::Connect {
            registry: self.registry.clone(),
            detail,
            hint,
        }
    }

    fn mode(&self) -> AuthMode {
        self.mode
            .lock()
            .map(|m| m.clone())
            .unwrap_or(AuthMode::Unknown)
    }

    fn set_mode(&self, m: AuthMode) {
        if let Ok(mut g) = self.mode.lock() {
            *g = m;
        }
    }

    /// Add the Authorization this registry wants for `scope`, if known already.
    fn authorize(&self, rb: reqwest::RequestBuilder, scope: &str) -> reqwest::RequestBuilder {
        match self.mode() {
            AuthMode::Basic => match &self.creds {
                Some(c) => rb.basic_auth(&c.username, Some(c.password())),
                None => rb,
            },
            AuthMode::Bearer => {
                let tok = self.tokens.lock().ok().and_then(|t| t.get(scope).cloned());
                match tok {
                    Some(t) => rb.bearer_auth(t),
                    None => rb,
                }
            }
            _ => rb,
        }
    }

    /// Fetch a Bearer token from the challenge's realm.
    async fn fetch_token(
        &self,
        image: &str,
        params: &HashMap<String, String>,
        scope: &str,
    ) -> Result<(), RegistryError> {
        let realm = params.get("realm").cloned().unwrap_or_default();
        let service = params.get("service").cloned().unwrap_or_default();
        if realm.is_empty() {
            return Err(RegistryError::Malformed {
                registry: self.registry.clone(),
                image: image.to_string(),
                detail: "Bearer challenge without a realm".into(),
            });
        }
        let mut url = url::Url::parse(&realm).map_err(|e| RegistryError::Malformed {
            registry: self.registry.clone(),
            image: image.to_string(),
            detail: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if !service.is_empty() {
                q.append_pair("service", &service);
            }
            let sc = params.get("scope").map(String::as_str).unwrap_or(scope);
            if !sc.is_empty() {
                q.append_pair("scope", sc);
            }
        }
        let mut rb = self.http.get(url.clone());
        if let Some(c) = &self.creds {
            rb = rb.basic_auth(&c.username, Some(c.password()));
        }
        let resp = rb.send().await.map_err(|e| self.connect_err(&e))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Auth {
                registry: self.registry.clone(),
                image: image.to_string(),
                status,
                detail: format!(" (token endpoint {} refused)", realm),
            });
        }
        if status != 200 {
            return Err(RegistryError::Status {
                registry: self.registry.clone(),
                image: image.to_string(),
                status,
                detail: format!("from token endpoint {realm}"),
            });
        }
        #[derive(Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp.bytes().await.map_err(|e| self.connect_err(&e))?;
        let t: Tok = serde_json::from_slice(&body).map_err(|e| RegistryError::Malformed {
            registry: self.registry.clone(),
            image: image.to_string(),
            detail: format!("token endpoint {realm} answered no JSON token: {e}"),
        })?;
        let tok = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Malformed {
                registry: self.registry.clone(),
                image: image.to_string(),
                detail: format!("token endpoint {realm} answered no `token`"),
            })?;
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(scope.to_string(), tok);
        }
        let _ = service;
        self.set_mode(AuthMode::Bearer);
        Ok(())
    }

    /// Send a request (built by `make`), answering one auth challenge.
    async fn send(
        &self,
        image: &str,
        scope: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = self
            .authorize(make(), scope)
            .send()
            .await
            .map_err(|e| self.connect_err(&e))?;
        if resp.status().as_u16() != 401 {
            if matches!(self.mode(), AuthMode::Unknown) {
                self.set_mode(AuthMode::Anonymous);
            }
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let auth_err = |detail: String| RegistryError::Auth {
            registry: self.registry.clone(),
            image: image.to_string(),
            status: 401,
            detail,
        };
        let Some((scheme, params)) = challenge else {
            return Err(auth_err(
                " (no usable WWW-Authenticate challenge in the answer)".into(),
            ));
        };
        let had = self.mode();
        match scheme.as_str() {
            "basic" => {
                if self.creds.is_none() {
                    return Err(auth_err(
                        " (the registry wants a login and none is configured)".into(),
                    ));
                }
                if matches!(had, AuthMode::Basic) {
                    return Err(auth_err(String::new()));
                }
                self.set_mode(AuthMode::Basic);
            }
            "bearer" => {
                let have_token = self
                    .tokens
                    .lock()
                    .map(|t| t.contains_key(scope))
                    .unwrap_or(false);
                if have_token && matches!(had, AuthMode::Bearer) {
                    // A cached token expired: drop it and fetch a new one once.
                    if let Ok(mut t) = self.tokens.lock() {
                        t.remove(scope);
                    }
                }
                self.fetch_token(image, &params, scope).await?;
            }
            other => {
                return Err(auth_err(format!(
                    " (unsupported auth scheme {other:?}; kiln speaks Basic and Bearer)"
                )))
            }
        }
        let resp = self
            .authorize(make(), scope)
            .send()
            .await
            .map_err(|e| self.connect_err(&e))?;
        if resp.status().as_u16() == 401 {
            return Err(auth_err(String::new()));
        }
        Ok(resp)
    }

    async fn check(
        &self,
        image: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            404 => Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                image: image.to_string(),
            }),
            403 => Err(RegistryError::Auth {
                registry: self.registry.clone(),
                image: image.to_string(),
                status,
                detail: " (the login may lack pull access to this repository)".into(),
            }),
            _ => {
                let body = resp.text().await.unwrap_or_default();
                Err(RegistryError::Status {
                    registry: self.registry.clone(),
                    image: image.to_string(),
                    status,
                    detail: registry_error_text(&body),
                })
            }
        }
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    fn malformed(&self, image: &str, detail: impl Into<String>) -> RegistryError {
        RegistryError::Malformed {
            registry: self.registry.clone(),
            image: image.to_string(),
            detail: detail.into(),
        }
    }

    /// One manifest request (`HEAD` or `GET`) with every manifest media type in `Accept`,
    /// authenticated and checked; returns the image's name for errors and the response.
    async fn manifest_request(
        &self,
        method: reqwest::Method,
        repository: &str,
        reference: &str,
    ) -> Result<(String, reqwest::Response), RegistryError> {
        let image = format!("{}/{repository}:{reference}", self.registry);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let scope = Self::scope(repository);
        let resp = self
            .send(&image, &scope, || {
                self.http
                    .request(method.clone(), &url)
                    .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        let resp = self.check(&image, resp).await?;
        Ok((image, resp))
    }

    /// The digest the registry serves for `repository:reference` (HEAD, `Docker-Content-Digest`;
    /// a GET and the body's SHA-256 when the header is missing).
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let (image, resp) = self
            .manifest_request(reqwest::Method::HEAD, repository, reference)
            .await?;
        match resp.headers().get("docker-content-digest") {
            Some(v) => {
                let d = v
                    .to_str()
                    .map_err(|_| self.malformed(&image, "Docker-Content-Digest is not text"))?;
                if !valid_digest(d) {
                    return Err(self.malformed(
                        &image,
                        format!("Docker-Content-Digest {d:?} is not a sha256/sha512 digest"),
                    ));
                }
                Ok(d.to_string())
            }
            None => Ok(self.manifest(repository, reference).await?.digest),
        }
    }

    /// The manifest the registry serves for `repository:reference`, its media type and digest.
    /// A `Docker-Content-Digest` that disagrees with the body is an error.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let (image, resp) = self
            .manifest_request(reqwest::Method::GET, repository, reference)
            .await?;
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.connect_err(&e))?
            .to_vec();
        let computed = sha256_digest(&body);
        if let Some(h) = &header_digest {
            if h.starts_with("sha256:") && h != &computed {
                return Err(self.malformed(
                    &image,
                    format!("Docker-Content-Digest {h} does not match the manifest it sent ({computed})"),
                ));
            }
        }
        let doc: ManifestDoc = serde_json::from_slice(&body)
            .map_err(|e| self.malformed(&image, format!("manifest is not JSON: {e}")))?;
        if doc.schema_version != 2 {
            return Err(self.malformed(
                &image,
                format!(
                    "manifest schemaVersion {} (kiln reads schema 2 / OCI only)",
                    doc.schema_version
                ),
            ));
        }
        let media_type = doc.media_type.clone().or(ct).unwrap_or_default();
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            if doc.manifests.is_empty() {
                OCI_MANIFEST.to_string()
            } else {
                OCI_INDEX.to_string()
            }
        } else {
            media_type
        };
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type.as_str()) {
            return Err(self.malformed(
                &image,
                format!("unexpected manifest media type {media_type:?}"),
            ));
        }
        Ok(Manifest {
            media_type,
            digest: header_digest
                .filter(|d| valid_digest(d))
                .unwrap_or(computed),
            body,
        })
    }

    /// A blob's bytes, checked against its digest.
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let image = format!("{}/{repository}@{digest}", self.registry);
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let scope = Self::scope(repository);
        let resp = self.send(&image, &scope, || self.http.get(&url)).await?;
        let resp = self.check(&image, resp).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.connect_err(&e))?
            .to_vec();
        if digest.starts_with("sha256:") && sha256_digest(&body) != digest {
            return Err(self.malformed(&image, "blob content does not match its digest"));
        }
        Ok(body)
    }

    /// Digest, platforms, labels and layers of `repository:reference`. For an index, the
    /// platforms of all entries and the labels/layers of the first.
    pub async fn inspect(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ImageInfo, RegistryError> {
        let image = format!("{}/{repository}:{reference}", self.registry);
        let top = self.manifest(repository, reference).await?;
        let doc: ManifestDoc = serde_json::from_slice(&top.body)
            .map_err(|e| self.malformed(&image, format!("manifest is not JSON: {e}")))?;
        let (image_doc, mut platforms) =
            if top.media_type == OCI_INDEX || top.media_type == DOCKER_LIST {
                let platforms: Vec<Platform> = doc
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.clone())
                    .collect();
                let first = doc
                    .manifests
                    .first()
                    .ok_or_else(|| self.malformed(&image, "image index lists no manifests"))?;
                let m = self.manifest(repository, &first.digest).await?;
                let d: ManifestDoc = serde_json::from_slice(&m.body)
                    .map_err(|e| self.malformed(&image, format!("manifest is not JSON: {e}")))?;
                (d, platforms)
            } else {
                (doc, Vec::new())
            };
        let cfg_desc = image_doc
            .config
            .as_ref()
            .ok_or_else(|| self.malformed(&image, "image manifest has no config"))?;
        if !valid_digest(&cfg_desc.digest) {
            return Err(self.malformed(&image, "config digest is not a digest"));
        }
        let cfg_bytes = self.blob(repository, &cfg_desc.digest).await?;
        let cfg: ConfigDoc = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| self.malformed(&image, format!("config blob is not JSON: {e}")))?;
        if platforms.is_empty() {
            platforms.push(Platform {
                os: cfg.os.clone(),
                architecture: cfg.architecture.clone(),
                variant: cfg.variant.clone(),
            });
        }
        Ok(ImageInfo {
            digest: top.digest,
            media_type: top.media_type,
            platforms,
            labels: cfg.config.and_then(|c| c.labels).unwrap_or_default(),
            layers: image_doc.layers.into_iter().map(|l| l.digest).collect(),
            config: cfg_desc.digest.clone(),
        })
    }
}

/// Writing manifests (an image index for a manifest list: `manifest_list.rs`).
impl RegistryClient {
    /// `PUT /v2/<repository>/manifests/<reference>` with `media_type`; returns the digest the
    /// registry answers (`Docker-Content-Digest`), checked against the body's own SHA-256.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegistryError> {
        let image = format!("{}/{repository}:{reference}", self.registry);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let scope = format!("repository:{repository}:pull,push");
        let resp = self
            .send(&image, &scope, || {
                self.http
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(body.to_vec())
            })
            .await?;
        let status = resp.status().as_u16();
        if !(200..=299).contains(&status) {
            let body = resp.text().await.unwrap_or_default();
            return Err(match status {
                401 | 403 => RegistryError::Auth {
                    registry: self.registry.clone(),
                    image,
                    status,
                    detail: " (the login may lack push access to this repository)".into(),
                },
                _ => RegistryError::Status {
                    registry: self.registry.clone(),
                    image,
                    status,
                    detail: registry_error_text(&body),
                },
            });
        }
        let computed = sha256_digest(body);
        match resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) if d != computed => Err(self.malformed(
                &image,
                format!("the registry stored the manifest as {d}, not {computed}"),
            )),
            _ => Ok(computed),
        }
    }
}

/// The registry's own error text (`{"errors":[{"code":..,"message":..}]}`), else the body's start.
pub fn registry_error_text(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        errors: Vec<EI>,
    }
    #[derive(Deserialize)]
    struct EI {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<E>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    body.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("127.0.0.1:5000/kolla/nova-api:2024.1-rocky-9-20240101T000000")
            .unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kolla/nova-api");
        assert_eq!(r.reference, "2024.1-rocky-9-20240101T000000");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("reg.example:5000/k/x@{d}")).unwrap();
        assert_eq!(r.reference, d);
        assert_eq!(r.to_string(), format!("reg.example:5000/k/x@{d}"));
        assert!(ImageRef::parse("kolla/nova-api:1").is_err());
        assert!(ImageRef::parse("reg:5000/Kolla/x:1").is_err());
    }

    #[test]
    fn parses_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::new("kolla", "s3cret-pw");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
