//! The app's static files (`[app] static`): a small file is read once and
//! served from memory, every file carries `ETag` and `Last-Modified`, and
//! a client that has the file already gets `304 Not Modified`. A file is
//! looked at again (its length and time) at most once a second, so a
//! deploy that replaces files is seen within a second. What is kept is
//! bounded: files up to [`KEEP_FILE`], [`KEEP_BYTES`] in all; a larger
//! file is streamed from disk as it is read.

use super::page::{RequestId, error, secured, sized};
use crate::capabilities::paths::Root;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest file kept in memory.
const KEEP_FILE: u64 = 256 << 10;
/// What all kept files may take; past it the kept files are dropped and
/// kept again as they are asked for.
const KEEP_BYTES: usize = 32 << 20;
/// How long a kept file is served before its length and time are looked
/// at again.
const FRESH: Duration = Duration::from_secs(1);
/// The size of the chunks a large file is sent in: a slow client holds
/// one or two of them, never the file.
const CHUNK: usize = 16 << 10;

/// The static directory and the files kept from it.
pub(super) struct StaticFiles {
    root: Root,
    kept: parking_lot::Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    files: HashMap<String, Arc<Kept1>>,
    bytes: usize,
}

/// One kept file.
struct Kept1 {
    body: Bytes,
    version: Version,
    /// When its length and time were last looked at.
    checked: parking_lot::Mutex<Instant>,
}

/// What tells one content of a file from another, and the headers that
/// say it.
#[derive(Clone)]
struct Version {
    len: u64,
    modified: SystemTime,
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_type: HeaderValue,
}

impl Version {
    fn of(path: &str, len: u64, modified: SystemTime) -> Self {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        // Length and time, as nginx's: cheap, and a new deploy changes it.
        let etag = format!(
            "\"{len:x}-{:x}{:08x}\"",
            since.as_secs(),
            since.subsec_nanos()
        );
        Version {
            len,
            modified,
            etag: HeaderValue::from_str(&etag).expect("hex digits and quotes"),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .expect("an HTTP date is ASCII"),
            content_type: content_type(path),
        }
    }
}

impl StaticFiles {
    pub(super) fn new(root: Root) -> Self {
        StaticFiles {
            root,
            kept: parking_lot::Mutex::default(),
        }
    }

    /// The answer to `method` of the file at `path` (below `/static/`).
    pub(super) fn answer(
        &self,
        method: &Method,
        path: &str,
        request: &HeaderMap,
        id: RequestId,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Static files can only be read.",
                id,
            );
        }
        let head = method == Method::HEAD;
        if let Some(kept) = self.fresh(path) {
            return respond(&kept.version, request, head, || {
                Body::from(kept.body.clone())
            });
        }
        let not_found = || error(StatusCode::NOT_FOUND, "There is no page here.", id);
        let Ok((file, meta)) = self.root.open_file(path) else {
            return not_found();
        };
        let version = Version::of(path, meta.len(), meta.modified().unwrap_or(UNIX_EPOCH));
        if version.len > KEEP_FILE {
            return respond(&version, request, head, || {
                use tokio::io::AsyncReadExt;
                let file = tokio::fs::File::from_std(file).take(version.len);
                Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, CHUNK))
            });
        }
        let mut bytes = Vec::with_capacity(version.len as usize);
        use std::io::Read;
        // No more than it had: a file that grows meanwhile is read again
        // at the next look.
        if file.take(version.len).read_to_end(&mut bytes).is_err() {
            return not_found();
        }
        let body = Bytes::from(bytes);
        let response = respond(&version, request, head, || Body::from(body.clone()));
        self.keep(path, body, version);
        response
    }

    /// The kept file at `path`, if its length and time are still the ones
    /// it was read with (looked at once a second at most).
    fn fresh(&self, path: &str) -> Option<Arc<Kept1>> {
        let kept = self.kept.lock().files.get(path).cloned()?;
        let mut checked = kept.checked.lock();
        if checked.elapsed() < FRESH {
            drop(checked);
            return Some(kept);
        }
        let (len, modified) = self.root.stat(path).ok()?;
        if len != kept.version.len || modified != kept.version.modified {
            return None;
        }
        *checked = Instant::now();
        drop(checked);
        Some(kept)
    }

    fn keep(&self, path: &str, body: Bytes, version: Version) {
        let mut kept = self.kept.lock();
        if kept.bytes + body.len() > KEEP_BYTES {
            *kept = Kept::default();
        }
        kept.bytes += body.len();
        let old = kept.files.insert(
            path.to_owned(),
            Arc::new(Kept1 {
                body,
                version,
                checked: parking_lot::Mutex::new(Instant::now()),
            }),
        );
        if let Some(old) = old {
            kept.bytes -= old.body.len();
        }
    }
}

/// The file's answer: its headers, and its body (`body`) unless this is
/// a HEAD or the request's conditions say the client has this version
/// (`304`).
fn respond(
    version: &Version,
    request: &HeaderMap,
    head: bool,
    body: impl FnOnce() -> Body,
) -> Response<Body> {
    let unchanged = not_modified(request, version);
    let mut response = sized(
        if head || unchanged {
            Body::empty()
        } else {
            body()
        },
        if unchanged {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        },
    );
    let headers = response.headers_mut();
    if !unchanged {
        headers.insert(header::CONTENT_TYPE, version.content_type.clone());
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(version.len));
    }
    headers.insert(header::ETAG, version.etag.clone());
    headers.insert(header::LAST_MODIFIED, version.last_modified.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    secured(response)
}

/// Whether the request's `If-None-Match` (or, without one,
/// `If-Modified-Since`) says the client has `version` (RFC 9110 13.1).
fn not_modified(request: &HeaderMap, version: &Version) -> bool {
    if let Some(tags) = request.get(header::IF_NONE_MATCH) {
        return tags
            .to_str()
            .is_ok_and(|tags| etag_matches(tags, version.etag.as_bytes()));
    }
    let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    // HTTP dates have whole seconds.
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs(version.modified) <= secs(since)
}

/// Whether a list of entity tags (`If-None-Match`) names `etag`, by the
/// weak comparison: `W/` is ignored, `*` matches any.
fn etag_matches(tags: &str, etag: &[u8]) -> bool {
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
}

/// The `Content-Type` of a file, by its extension.
fn content_type(path: &str) -> HeaderValue {
    let ext = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    HeaderValue::from_static(match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        Some("otf") => "font/otf",
        Some("pdf") => "application/pdf",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    })
}

/// For the request fuzz target: the conditions read as for a file.
pub(super) mod fuzzing {
    use super::*;

    /// Whether `headers` say the client has a 19-byte file of 2026.
    pub(in crate::server) fn conditions(headers: &HeaderMap) -> bool {
        let modified = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        not_modified(headers, &Version::of("app.css", 19, modified))
    }
}

#[cfg(test)]
mod tests;
