//! A minimal QMP (QEMU Machine Protocol) client: one connection per command, which is all the lab
//! needs (resize a disk, hot-add one) and keeps no state between calls. QMP is JSON lines over
//! a unix socket: a greeting, `qmp_capabilities`, then `{"execute": ..}` answered by
//! `{"return": ..}` or `{"error": ..}`, with asynchronous `{"event": ..}` lines in between.

use super::VmError;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Runs one QMP command and returns its `return` value.
pub fn execute(socket: &Path, command: &str, arguments: Value) -> Result<Value, VmError> {
    let err = |msg: String| VmError::Qmp {
        socket: socket.to_path_buf(),
        msg,
    };
    let stream = UnixStream::connect(socket).map_err(|e| VmError::io(socket, e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| VmError::io(socket, e))?;
    let mut writer = stream.try_clone().map_err(|e| VmError::io(socket, e))?;
    let mut reader = BufReader::new(stream);

    let mut next = |want_return: bool| -> Result<Value, VmError> {
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| VmError::io(socket, e))?;
            if n == 0 {
                return Err(err("qemu closed the QMP connection".into()));
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| err(format!("not JSON ({e}): {}", line.trim())))?;
            if v.get("event").is_some() {
                continue;
            }
            if !want_return {
                return Ok(v);
            }
            if let Some(e) = v.get("error") {
                return Err(err(format!("{command}: {e}")));
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
        }
    };
    let greeting = next(false)?;
    if greeting.get("QMP").is_none() {
        return Err(err(format!("unexpected greeting {greeting}")));
    }
    let mut send = |v: Value| -> Result<(), VmError> {
        let mut text = v.to_string();
        text.push('\n');
        writer
            .write_all(text.as_bytes())
            .map_err(|e| VmError::io(socket, e))
    };
    send(json!({"execute": "qmp_capabilities"}))?;
    next(true)?;
    send(json!({"execute": command, "arguments": arguments}))?;
    next(true)
}
