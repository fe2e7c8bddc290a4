//! `memory.grow` per request of every demo page: the demo app of
//! `rawalite.toml` served with `--metrics`, each guest's page asked
//! [`ASKS`] times by a signed-in user, and the grows the host counted
//! (`rawalite_memory_grows_total`) over the requests it answered. A grow
//! costs a request two `mprotect`s; the goal is none.

use super::*;

/// Requests per page.
const ASKS: usize = 20;

/// Each demo guest with the grows per request of its page.
pub(super) fn memory_grows(
    root: &Path,
    rawalite: &Path,
    work: &Path,
) -> Result<Vec<(String, f64)>> {
    crate::step("memory.grow per request of each demo page (serve --metrics)");
    let manifest = root.join("rawalite.toml");
    let data = work.join("demo-data");
    // The demo's own manifest, with a data directory of the bench's.
    let mut add = Command::new(rawalite);
    add.args(["user", "add", USER, "--manifest"])
        .arg(&manifest)
        .arg("--data")
        .arg(&data);
    add_user_with(&mut add)?;
    let (port, metrics) = (free_port()?, free_port()?);
    let mut command = rawalite_serve(rawalite, &manifest, port, &work.join("cache"));
    command
        .current_dir(root)
        .arg("--data")
        .arg(&data)
        .args(["--metrics", &format!("127.0.0.1:{metrics}")]);
    let server = Server::start("RawaLite (demo, metrics)", &mut command, port, work)?;
    let cookie = sign_in(port)?;
    let routes = routes(&std::fs::read_to_string(&manifest)?);
    for route in &routes {
        for _ in 0..ASKS {
            // Any answer counts: a page may want parameters it is not given.
            let _ = get_signed_in(port, route, &cookie);
        }
    }
    let text = String::from_utf8_lossy(&http_get(metrics, "/metrics")?).into_owned();
    drop(server);
    let mut grows = Vec::new();
    for (guest, requests) in counts(&text, "rawalite_requests_total") {
        if guest == "-" || guest == "login" {
            continue;
        }
        let grown = counts(&text, "rawalite_memory_grows_total")
            .into_iter()
            .find(|(g, _)| *g == guest)
            .map_or(0.0, |(_, n)| n);
        grows.push((guest, grown / requests.max(1.0)));
    }
    grows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(grows)
}

/// The routes of a manifest's guests.
fn routes(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("route = \""))
        .filter_map(|r| r.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

/// A counter's values summed per `guest` label, from Prometheus text.
fn counts(text: &str, name: &str) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let guest = line
            .split("guest=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("-");
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        match sums.iter_mut().find(|(g, _)| g == guest) {
            Some((_, sum)) => *sum += value,
            None => sums.push((guest.to_owned(), value)),
        }
    }
    sums
}

/// A GET with a session cookie; the status line.
fn get_signed_in(port: u16, path: &str, cookie: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_per_guest() {
        let text = "# TYPE rawalite_requests_total counter\n\
                    rawalite_requests_total{guest=\"hello\",status=\"200\"} 20\n\
                    rawalite_requests_total{guest=\"hello\",status=\"404\"} 2\n\
                    rawalite_requests_total{guest=\"-\",status=\"404\"} 1\n\
                    rawalite_memory_grows_total{guest=\"reports\"} 40\n";
        assert_eq!(
            counts(text, "rawalite_requests_total"),
            [("hello".to_owned(), 22.0), ("-".to_owned(), 1.0)]
        );
        assert_eq!(
            counts(text, "rawalite_memory_grows_total"),
            [("reports".to_owned(), 40.0)]
        );
    }

    #[test]
    fn routes_are_read_from_the_manifest() {
        let manifest = "[[guest]]\nname = \"a\"\nroute = \"/\"\n\n[[guest]]\nroute = \"/b\"\n";
        assert_eq!(routes(manifest), ["/", "/b"]);
    }
}
