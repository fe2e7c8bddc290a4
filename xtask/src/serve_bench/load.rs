//! Loading the servers: starting and stopping them, one request, wrk
//! with the server's CPU time, and what /proc says of a process.

use super::*;

pub(super) struct Server {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) port: u16,
}

impl Server {
    /// Starts `command` with its output in `<work>/<name>.log` and waits
    /// until it answers.
    pub(super) fn start(
        name: &'static str,
        command: &mut Command,
        port: u16,
        work: &Path,
    ) -> Result<Server> {
        let log = work.join(format!("{}.log", name.replace(' ', "-")));
        let output = std::fs::File::create(&log)?;
        let child = command
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut server = Server { name, child, port };
        let deadline = Instant::now() + Duration::from_secs(300);
        // RawaLite is ready when /healthz says every guest compiled; the
        // others (no /healthz) when they answer.
        let ready = |server: &Server| match server.get("/healthz") {
            Ok(_) => true,
            Err(e) if e.to_string().contains(" 404") => server.get("/hello/ready").is_ok(),
            Err(_) => false,
        };
        while !ready(&server) {
            let exited = server.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{name} did not answer on port {port}; its output:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn get(&self, path: &str) -> Result<Vec<u8>> {
        http_get(self.port, path)
    }

    pub(super) fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET over a fresh connection; the body of a 200, or an error.
pub(super) fn http_get(port: u16, path: &str) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("{}", text.lines().next().unwrap_or("no answer"));
    }
    let at = text.find("\r\n\r\n").context("no header end")? + 4;
    let mut body = response[at..].to_vec();
    if text[..at]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(body)
}

pub(super) fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Lets wrk open a thousand sockets: raises this process's soft limit on
/// open files to its hard limit (children inherit it).
pub(super) fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Runs wrk with `connections` (and a cookie); fails on any error it saw.
pub(super) fn wrk(
    url: &str,
    duration: &str,
    connections: usize,
    cookie: Option<&str>,
    error_page: bool,
) -> Result<Load> {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        "-c",
        &connections.to_string(),
        "-d",
        duration,
        "--latency",
    ]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let out = command.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if (text.contains("Non-2xx or 3xx responses") && !error_page) || text.contains("Socket errors")
    {
        bail!("{url} answered errors under load:\n{text}");
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no requests/s in wrk's output:\n{text}"))?;
    let p50 = field("50%").and_then(millis).context("no p50")?;
    let p99 = field("99%").and_then(millis).context("no p99")?;
    Ok(Load {
        requests_per_second: rps,
        p50_ms: p50,
        p99_ms: p99,
        cpu_us: 0.0,
    })
}

/// The CPU time of process `pid` so far, all its threads, user and system,
/// in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's `)`: state is the 3rd field, utime the
    // 14th and stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {n} in /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

/// [`DURATION`] in seconds.
pub(super) fn duration_secs() -> f64 {
    DURATION.trim_end_matches('s').parse().unwrap_or(5.0)
}

/// `250.00us`, `1.20ms` or `1.01s` in milliseconds.
pub(super) fn millis(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM).
pub(super) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))
}

/// RSS in MiB after 5 s of load and at the end of a long run.
pub(super) fn long_run(server: &Server, path: &str) -> Result<(f64, f64)> {
    let pid = server.child.id();
    let url = server.url(path);
    let load =
        std::thread::spawn(move || wrk(&url, &format!("{LONG_RUN}s"), CONNECTIONS, None, false));
    std::thread::sleep(Duration::from_secs(5));
    let early = status_kib(pid, "VmRSS")? as f64 / 1024.0;
    std::thread::sleep(Duration::from_secs(LONG_RUN - 6));
    let late = status_kib(pid, "VmRSS")? as f64 / 1024.0;
    load.join()
        .map_err(|_| anyhow::anyhow!("wrk thread failed"))??;
    Ok((early, late))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn wrk_latencies_are_read_in_milliseconds() {
        assert_eq!(millis("250.00us"), Some(0.25));
        assert_eq!(millis("1.50ms"), Some(1.5));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("fast"), None);
    }

    #[test]
    pub(super) fn cpu_time_is_read_from_proc_and_grows() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).unwrap();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_ticks(pid).unwrap() > before);
    }

    #[test]
    pub(super) fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }
}
