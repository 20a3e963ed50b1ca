//! `uri`: make an HTTP request and return the response (status, headers, content, json).
//!
//! Ansible runs uri on the target host, so it does here: the request is made by `curl` on the host
//! (see [`super::support::curl`] for how credentials stay off the command line). A request's effect on the
//! server is unknown, so the query step is opaque and check mode skips the task, as Ansible's
//! `check_mode: none` does. `changed` is false unless `dest` was written.
//!
//! The result has Ansible's keys: `status`, `url` (after redirects), `redirected`, `msg`
//! ("OK (N bytes)"), `elapsed`, every response header with `-` turned into `_` and lower-cased,
//! `content` with `return_content`, `json` when the response says it is JSON, `path` with `dest`.
//! `url_password` is never echoed.

use super::support::args;
use crate::modules::support::curl::{self, HttpRequest};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use crate::value::{Map, Value};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    url: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    dest: Option<String>,
    #[serde(default, alias = "user", deserialize_with = "args::opt_string")]
    url_username: Option<String>,
    #[serde(default, alias = "password", deserialize_with = "args::opt_string")]
    url_password: Option<String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "args::opt_string")]
    body_format: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    method: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    return_content: bool,
    #[serde(default, deserialize_with = "args::bool")]
    force_basic_auth: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    follow_redirects: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::string_list")]
    status_code: Vec<String>,
    #[serde(default, deserialize_with = "args::opt_int")]
    timeout: Option<i64>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default = "crate::modules::support::args::yes", deserialize_with = "args::bool")]
    validate_certs: bool,
    #[serde(default = "crate::modules::support::args::yes", deserialize_with = "args::bool")]
    use_proxy: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    http_agent: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    ca_path: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    client_cert: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    client_key: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    unix_socket: Option<String>,
}

pub struct Uri;

/// The body as text, and the Content-Type it implies.
pub fn encode_body(
    body: &serde_json::Value,
    format: &str,
) -> Result<(String, Option<&'static str>), String> {
    match format {
        "json" => Ok((
            match body {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            Some("application/json"),
        )),
        "form-urlencoded" => {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match body {
                serde_json::Value::String(s) => return Ok((s.clone(), Some("application/x-www-form-urlencoded"))),
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        ser.append_pair(k, &text(v));
                    }
                }
                serde_json::Value::Array(items) => {
                    for i in items {
                        match i.as_array().map(|p| p.as_slice()) {
                            Some([k, v]) => {
                                ser.append_pair(&text(k), &text(v));
                            }
                            _ => return Err("failed to parse body as form_urlencoded: a list body must hold (key, value) pairs".into()),
                        }
                    }
                }
                other => return Err(format!("failed to parse body as form_urlencoded: {other}")),
            }
            Ok((ser.finish(), Some("application/x-www-form-urlencoded")))
        }
        "raw" => Ok((
            match body {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            None,
        )),
        other => Err(format!(
            "value of body_format must be one of: form-urlencoded, json, raw, form-multipart, got: {other}"
        )),
    }
}

fn is_json_type(ct: &str) -> bool {
    let main = ct.split(';').next().unwrap_or("").trim().to_lowercase();
    let sub = main.split('/').nth(1).unwrap_or("");
    let sub = sub.rsplit('+').next().unwrap_or(sub);
    sub == "json" || sub == "javascript" || sub == "x-json"
}

impl Module for Uri {
    const NAMES: &'static [&'static str] = &["uri", "ansible.builtin.uri"];
    type Args = Args;
    type Plan = Args;

    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Args>, ModuleError> {
        Ok(Query::Opaque(a))
    }

    async fn apply(&self, a: Args, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        if let Some(c) = &a.creates {
            if ctx.session.stat(c, true, false).await?.exists {
                return Ok(Outcome::ok().with("stdout", format!("skipped, since '{c}' exists")));
            }
        }
        if let Some(r) = &a.removes {
            if !ctx.session.stat(r, true, false).await?.exists {
                return Ok(
                    Outcome::ok().with("stdout", format!("skipped, since '{r}' does not exist"))
                );
            }
        }
        let mut codes = vec![];
        for c in &a.status_code {
            codes.push(c.trim().parse::<i64>().map_err(|_| {
                ModuleError::Args(format!("uri: status_code {c:?} is not a number"))
            })?);
        }
        if codes.is_empty() {
            codes.push(200);
        }
        let method = a
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let dir = curl::tempdir(ctx, None).await?;
        let r = run(&a, ctx, &dir, &method, &codes).await;
        curl::cleanup(ctx, &dir).await;
        r
    }
}

async fn run(
    a: &Args,
    ctx: &Ctx,
    dir: &str,
    method: &str,
    codes: &[i64],
) -> Result<Outcome, ModuleError> {
    let mut headers: Vec<(String, String)> = a
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            )
        })
        .collect();
    let mut body_file = None;
    if let Some(b) = a.body.as_ref().filter(|b| !b.is_null()) {
        let format = a.body_format.as_deref().unwrap_or("raw");
        let (text, ct) = match encode_body(b, format) {
            Ok(x) => x,
            Err(m) => return Ok(Outcome::failed(m)),
        };
        if let Some(ct) = ct {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), ct.into()));
            }
        }
        let path = format!("{dir}/body");
        ctx.session
            .write_file(WriteRequest {
                path: path.clone(),
                content: text.into_bytes(),
                mode: Some(0o600),
                ..Default::default()
            })
            .await?;
        body_file = Some(path);
    }
    let follow = match a.follow_redirects.as_deref().unwrap_or("safe") {
        "all" | "yes" | "true" | "True" => true,
        "safe" | "urllib2" => method == "GET" || method == "HEAD",
        _ => false,
    };
    let req = HttpRequest {
        url: a.url.clone(),
        method: method.to_string(),
        headers,
        body_file,
        username: a.url_username.clone(),
        password: a.url_password.clone(),
        force_basic_auth: a.force_basic_auth,
        validate_certs: a.validate_certs,
        timeout: a.timeout.unwrap_or(30).max(0) as u64,
        follow_redirects: follow,
        use_proxy: a.use_proxy,
        user_agent: a.http_agent.clone(),
        ca_path: a.ca_path.clone(),
        client_cert: a.client_cert.clone(),
        client_key: a.client_key.clone(),
        unix_socket: a.unix_socket.clone(),
        output: format!("{dir}/out"),
        header_file: format!("{dir}/headers"),
        time_cond: None,
    };
    let resp = curl::fetch(ctx, &req).await?;
    let mut o = Outcome::ok();
    o.data = resp.header_values();
    o = o
        .with("redirected", Value::Bool(resp.redirected))
        .with("url", Value::Str(resp.url.clone()))
        .with("status", Value::Int(resp.status))
        .with("elapsed", Value::Int(resp.elapsed as i64))
        .with("cookies", Value::Map(Map::new()))
        .with("cookies_string", Value::Str(String::new()));
    let ok = codes.contains(&resp.status);
    if let Some(e) = &resp.error {
        o.failed = true;
        o.msg = Some(format!(
            "Status code was -1 and not {codes:?}: Request failed: {e}"
        ));
        return Ok(o);
    }
    let json_type = resp
        .header("content-type")
        .map(is_json_type)
        .unwrap_or(false);
    let want_content = json_type || a.return_content || !ok;
    let content = if want_content {
        match ctx.session.read_file(&req.output).await {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(_) => Some(String::new()),
        }
    } else {
        None
    };
    if let Some(c) = &content {
        if json_type {
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(c) {
                o = o.with("json", Value::from_json(j));
            }
        }
        if a.return_content {
            o = o.with("content", Value::Str(c.clone()));
        }
    }
    if let (Some(dest), true) = (&a.dest, ok && resp.status != 304) {
        let mut dest = dest.clone();
        let st = ctx.session.stat(&dest, true, false).await?;
        if st.exists && st.kind == "directory" {
            let name = resp
                .header("content-disposition")
                .and_then(crate::modules::support::curl::disposition_filename)
                .unwrap_or_else(|| crate::modules::support::curl::url_filename(&resp.url));
            dest = format!("{}/{}", dest.trim_end_matches('/'), name);
        }
        let mv = ctx.run(&["mv", "-f", &req.output, &dest]).await?;
        if mv.rc != 0 {
            o.failed = true;
            o.msg = Some(format!(
                "failed to write {dest}: {}",
                mv.stderr_text().trim()
            ));
            return Ok(o);
        }
        o.changed = true;
        o = o.with("path", Value::Str(dest));
    }
    if !ok {
        o.failed = true;
        let reason = format!("HTTP Error {}: {}", resp.status, resp.reason);
        o.msg = Some(format!(
            "Status code was {} and not {codes:?}: {reason}",
            resp.status
        ));
    } else {
        o.msg = Some(resp.ok_msg());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let j = serde_json::json!({"a": 1, "b": "x y"});
        assert_eq!(
            encode_body(&j, "json").unwrap(),
            (r#"{"a":1,"b":"x y"}"#.into(), Some("application/json"))
        );
        assert_eq!(encode_body(&j, "form-urlencoded").unwrap().0, "a=1&b=x+y");
        let pairs = serde_json::json!([["k", "v&w"]]);
        assert_eq!(encode_body(&pairs, "form-urlencoded").unwrap().0, "k=v%26w");
        assert_eq!(
            encode_body(&serde_json::json!("raw text"), "raw").unwrap(),
            ("raw text".into(), None)
        );
        assert!(encode_body(&j, "xml").is_err());
        assert!(is_json_type("application/json; charset=utf-8"));
        assert!(is_json_type("application/vnd.api+json"));
        assert!(!is_json_type("text/html"));
        assert_eq!(crate::modules::support::curl::url_filename("http://h/x/file.tar.gz?x=1"), "file.tar.gz");
        assert_eq!(crate::modules::support::curl::url_filename("http://h/"), "index.html");
    }
}
