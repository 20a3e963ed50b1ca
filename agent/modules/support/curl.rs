//! One HTTP request made ON THE HOST with `curl`, shared by `uri` and `get_url`.
//!
//! Ansible's `uri` and `get_url` run on the target, so a URL that only the host can reach (its
//! loopback, a private network, its proxy settings) works. The agent has no HTTP client, and the
//! hosts kiln provisions all have curl, so the request is curl's. Everything that shapes the
//! request — URL, method, headers, credentials — goes in a curl config read from stdin (`curl -K -`),
//! never on the command line, so `ps` on the host shows no password. The response body goes to a
//! file in a private temporary directory (`mktemp -d`, 0700), the headers to another, and curl's
//! `%{json}` write-out tells the final URL, status and redirects.

use crate::modules::{Ctx, ModuleError};
use crate::transport::{ExecRequest, TransportError};
use crate::value::{Map, Value};

/// What to ask for.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// A host path whose bytes are the request body.
    pub body_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send credentials on the first request (Ansible's `force_basic_auth`); otherwise only after
    /// a 401 challenge, as urllib does.
    pub force_basic_auth: bool,
    pub validate_certs: bool,
    pub timeout: u64,
    pub follow_redirects: bool,
    pub use_proxy: bool,
    pub user_agent: Option<String>,
    pub ca_path: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub unix_socket: Option<String>,
    /// Only if modified since this host file's mtime (`If-Modified-Since`; curl's `time-cond`).
    pub time_cond: Option<String>,
    /// A host path the body is written to.
    pub output: String,
    /// A host path the response headers are written to.
    pub header_file: String,
}

/// A string as a curl config value: double-quoted, with `\\ \" \n \r \t` escaped.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '"' => q.push_str("\\\""),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The curl config (`curl -K -`) for a request. Contains the password: never log it.
pub fn config(r: &HttpRequest) -> String {
    let mut c = String::new();
    // `name = "value"` lines, and bare `name` lines for flags
    let mut put = |k: &str, v: Option<&str>| match v {
        Some(v) => c.push_str(&format!("{k} = {}\n", quote(v))),
        None => c.push_str(&format!("{k}\n")),
    };
    put("url", Some(&r.url));
    if r.method == "HEAD" {
        put("head", None);
    } else if r.method != "GET" || r.body_file.is_some() {
        put("request", Some(&r.method));
    }
    for (k, v) in &r.headers {
        put("header", Some(&format!("{k}: {v}")));
    }
    if let Some(f) = &r.body_file {
        put("data-binary", Some(&format!("@{f}")));
    }
    if let Some(u) = &r.username {
        put(
            "user",
            Some(&format!(
                "{u}:{}",
                r.password.as_deref().unwrap_or_default()
            )),
        );
        put(
            if r.force_basic_auth {
                "basic"
            } else {
                "anyauth"
            },
            None,
        );
    }
    if !r.validate_certs {
        put("insecure", None);
    }
    if r.timeout > 0 {
        // Ansible's timeout is a socket timeout, not a limit on the whole transfer: give up when
        // connecting takes longer, or when nothing arrives for that long
        let t = r.timeout.to_string();
        put("connect-timeout", Some(&t));
        put("speed-time", Some(&t));
        put("speed-limit", Some("1"));
    }
    if r.follow_redirects {
        put("location", None);
        put("max-redirs", Some("50"));
    }
    if !r.use_proxy {
        put("noproxy", Some("*"));
    }
    put(
        "user-agent",
        Some(r.user_agent.as_deref().unwrap_or("ansible-httpget")),
    );
    if let Some(p) = &r.ca_path {
        put("cacert", Some(p));
    }
    if let Some(p) = &r.client_cert {
        put("cert", Some(p));
    }
    if let Some(p) = &r.client_key {
        put("key", Some(p));
    }
    if let Some(p) = &r.unix_socket {
        put("unix-socket", Some(p));
    }
    if let Some(t) = &r.time_cond {
        put("time-cond", Some(t));
    }
    put("output", Some(&r.output));
    put("dump-header", Some(&r.header_file));
    put("write-out", Some("%{json}"));
    put("silent", None);
    put("show-error", None);
    c
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// The HTTP status; -1 when the request failed (no response).
    pub status: i64,
    /// The URL after redirects.
    pub url: String,
    pub redirected: bool,
    /// Status line reason ("OK", "Not Found").
    pub reason: String,
    /// The final response's headers, lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    /// curl's error message when the request failed.
    pub error: Option<String>,
    pub elapsed: u64,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Headers as Ansible's uri returns them: `content-type` → `content_type`.
    pub fn header_values(&self) -> Map {
        let mut m = Map::new();
        for (k, v) in &self.headers {
            m.insert(k.replace('-', "_").to_lowercase(), Value::Str(v.clone()));
        }
        m
    }

    /// urllib's `msg`: "OK (N bytes)" or "OK (unknown bytes)".
    pub fn ok_msg(&self) -> String {
        format!(
            "{} ({} bytes)",
            if self.reason.is_empty() {
                "OK"
            } else {
                &self.reason
            },
            self.header("content-length").unwrap_or("unknown")
        )
    }
}

/// Parse `--dump-header` output: the last response's status reason and headers.
pub fn parse_headers(dump: &str) -> (String, Vec<(String, String)>) {
    let mut reason = String::new();
    let mut headers = vec![];
    for line in dump.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            // a new response (after a redirect or a 100 Continue): start over
            headers.clear();
            reason = line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_string();
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    (reason, headers)
}

/// A private temporary directory on the host (0700), in `parent` (default `/tmp`).
pub async fn tempdir(ctx: &Ctx, parent: Option<&str>) -> Result<String, ModuleError> {
    let template = format!(
        "{}/kiln-http.XXXXXXXX",
        parent.unwrap_or("/tmp").trim_end_matches('/')
    );
    let mk = ctx.run(&["mktemp", "-d", &template]).await?;
    let dir = mk.stdout_text().trim().to_string();
    if mk.rc != 0 || dir.is_empty() {
        return Err(ModuleError::Failed(format!(
            "cannot make a temporary directory on the host: {}",
            mk.stderr_text().trim()
        )));
    }
    Ok(dir)
}

/// Run the request on the host.
pub async fn fetch(ctx: &Ctx, r: &HttpRequest) -> Result<HttpResponse, ModuleError> {
    let start = std::time::Instant::now();
    let req = ExecRequest {
        argv: vec!["curl".into(), "-K".into(), "-".into()],
        stdin: config(r).into_bytes(),
        env: ctx.env.clone(),
        ..Default::default()
    };
    let out = match ctx.exec(req).await {
        Ok(o) => o,
        Err(TransportError::Remote { msg, .. }) => {
            return Err(ModuleError::Failed(format!(
                "cannot run curl on the host (install curl): {msg}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let status = w
        .get("response_code")
        .or_else(|| w.get("http_code"))
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let mut resp = HttpResponse {
        status: if out.rc == 0 && status > 0 {
            status
        } else {
            -1
        },
        url: w
            .get("url_effective")
            .and_then(|v| v.as_str())
            .unwrap_or(&r.url)
            .to_string(),
        elapsed: start.elapsed().as_secs(),
        ..Default::default()
    };
    resp.redirected = resp.url != r.url;
    if resp.status < 0 {
        let msg = w
            .get("errormsg")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| out.stderr_text().trim().to_string());
        resp.error = Some(msg);
        return Ok(resp);
    }
    if let Ok(b) = ctx.session.read_file(&r.header_file).await {
        let (reason, headers) = parse_headers(&String::from_utf8_lossy(&b));
        resp.reason = reason;
        resp.headers = headers;
    }
    Ok(resp)
}

/// Remove the temporary directory, logging (not failing) when that does not work.
pub async fn cleanup(ctx: &Ctx, dir: &str) {
    if let Err(e) = ctx.session.remove(dir, true).await {
        tracing::warn!("{}: cannot remove {dir}: {e}", ctx.host);
    }
}

/// The file name for a `dest` that is a directory: the URL's last path segment, or `index.html`.
pub fn url_filename(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "index.html".into())
}

/// The file name a `Content-Disposition: attachment; filename="x"` header gives (base name only).
pub fn disposition_filename(h: &str) -> Option<String> {
    let part = h
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("filename="))?;
    let name = part.trim_matches('"');
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_quotes_and_carries_the_password_off_the_command_line() {
        let r = HttpRequest {
            url: "http://h/a b".into(),
            method: "POST".into(),
            headers: vec![("X-A".into(), "say \"hi\"\\".into())],
            body_file: Some("/tmp/d/body".into()),
            username: Some("u".into()),
            password: Some("p:w\"".into()),
            validate_certs: true,
            timeout: 30,
            follow_redirects: true,
            use_proxy: true,
            output: "/tmp/d/out".into(),
            header_file: "/tmp/d/hdr".into(),
            ..Default::default()
        };
        let c = config(&r);
        assert!(c.contains("url = \"http://h/a b\"\n"), "{c}");
        assert!(c.contains("request = \"POST\"\n"));
        assert!(c.contains("header = \"X-A: say \\\"hi\\\"\\\\\"\n"), "{c}");
        assert!(c.contains("data-binary = \"@/tmp/d/body\"\n"));
        assert!(c.contains("user = \"u:p:w\\\"\"\nanyauth\n"), "{c}");
        assert!(
            c.contains("connect-timeout = \"30\"\nspeed-time = \"30\"\n"),
            "{c}"
        );
        assert!(c.contains("\nlocation\n") && !c.contains("max-time"));
        assert!(!c.contains("insecure") && !c.contains("noproxy"));
        let c = config(&HttpRequest {
            method: "HEAD".into(),
            username: Some("u".into()),
            force_basic_auth: true,
            validate_certs: false,
            ..r
        });
        assert!(c.contains("\nhead\n") && c.contains("\nbasic\n") && c.contains("insecure\n"));
        assert!(quote("a\nb\tc").eq("\"a\\nb\\tc\""));
    }

    #[test]
    fn headers_of_the_last_response() {
        let dump = "HTTP/1.1 301 Moved Permanently\r\nLocation: /b\r\n\r\n\
                    HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n";
        let (reason, h) = parse_headers(dump);
        assert_eq!(reason, "OK");
        assert_eq!(h.len(), 2);
        let r = HttpResponse {
            reason,
            headers: h,
            ..Default::default()
        };
        assert_eq!(r.ok_msg(), "OK (12 bytes)");
        assert_eq!(
            r.header_values().get("content_type"),
            Some(&Value::Str("application/json".into()))
        );
    }
}
