//! What a run of the bench says: the tables of BENCHMARKS.md, the
//! ratios with their targets, and docs/bench-serve.svg.

use super::*;

/// A system and one of its pages.
pub(super) type Page = (&'static str, &'static str);

/// The ratios reported: what, a system's page over another system's
/// page, the target.
pub(super) const RATIOS: &[(&str, Page, Page, &str)] = &[
    (
        "hello: RawaLite / wasmtime serve",
        ("RawaLite", "hello"),
        ("wasmtime serve", "hello"),
        "≥ 4x",
    ),
    (
        "hello: RawaLite / native",
        ("RawaLite", "hello"),
        ("native", "hello"),
        "≥ 0.4x",
    ),
    (
        "host 404 page (no guest): RawaLite / native hello",
        ("RawaLite", "host 404 page"),
        ("native", "hello"),
        "≥ 0.9x",
    ),
    (
        "static file, 52 B: RawaLite / native hello",
        ("RawaLite", "static file, 52 B"),
        ("native", "hello"),
        "≥ 0.9x",
    ),
    (
        "static file, 100 KiB: RawaLite / native hello",
        ("RawaLite", "static file, 100 KiB"),
        ("native", "hello"),
        "",
    ),
    (
        "hello: access log (text, to a file) / log at warn",
        ("RawaLite (access log, text)", "hello"),
        ("RawaLite", "hello"),
        "≥ 0.95x",
    ),
    (
        "hello: access log (JSON, to a file) / log at warn",
        ("RawaLite (access log, JSON)", "hello"),
        ("RawaLite", "hello"),
        "≥ 0.95x",
    ),
    (
        "db 10 rows: RawaLite / native",
        ("RawaLite", "db 10 rows"),
        ("native", "db 10 rows"),
        "≥ 0.6x",
    ),
    (
        "db 10 rows on PostgreSQL: RawaLite / native (tokio-postgres, connections shared)",
        ("RawaLite", "db 10 rows (PostgreSQL)"),
        ("native", "db 10 rows (PostgreSQL)"),
        "≥ 0.6x",
    ),
    (
        "db 10 rows on PostgreSQL: RawaLite / native (a pool: one request per connection)",
        ("RawaLite", "db 10 rows (PostgreSQL)"),
        ("native (pool)", "db 10 rows (PostgreSQL)"),
        "",
    ),
    (
        "db 10 rows on PostgreSQL: through PgBouncer (transaction mode) / straight to the server",
        ("RawaLite via PgBouncer", "db 10 rows (PostgreSQL)"),
        ("RawaLite (direct)", "db 10 rows (PostgreSQL)"),
        "",
    ),
];

pub(super) struct Report {
    pub(super) runs: Vec<Run>,
    /// Each demo guest's `memory.grow`s per request.
    pub(super) grows: Vec<(String, f64)>,
    pub(super) rss_5s: f64,
    pub(super) rss_end: f64,
    pub(super) warm_start_ms: f64,
    pub(super) cold_start_ms: f64,
}

impl Report {
    pub(super) fn find(&self, system: &str, page: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.system == system && r.page == page && r.connections == CONNECTIONS)
    }

    /// `(system, page)` over `(other, its page)`, round by round: the
    /// median ratio and the range.
    pub(super) fn ratio(
        &self,
        (system, page): (&str, &str),
        (other, on): (&str, &str),
    ) -> Option<(f64, f64, f64)> {
        let (a, b) = (self.find(system, page)?, self.find(other, on)?);
        let mut ratios: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(a, b)| a.requests_per_second / b.requests_per_second)
            .collect();
        let (lo, hi) = spread(ratios.iter().copied());
        ratios.sort_by(f64::total_cmp);
        Some((ratios[ratios.len() / 2], lo, hi))
    }

    pub(super) fn markdown(&self) -> String {
        let mut md = format!(
            "Settings: `wrk -t2 -c{CONNECTIONS}` (and `-c{MANY}` where the table says), {ROUNDS} rounds of {DURATION} after a {WARM_UP} warm-up, the systems taking turns within each round; figures are the median round with the range of all rounds. RawaLite: `rawalite serve` with its defaults (workers: one per core; renders at once: 8 per core), its log at `warn` like the other servers except in the rows that say access log (its default log, to a file). Native: axum on tokio's default multi-thread runtime with rusqlite (a connection per worker thread) or tokio-postgres. wasmtime serve {WASMTIME_VERSION} with the pooling allocator. Everything, wrk included, shares this machine's {} cores. The database is seeded through the app's own migrations.\n\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        md += "| system | page | connections | requests/s (median, range) | p50 | p99 | server CPU per request | peak RSS |\n|---|---|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.runs {
            let (lo, hi) = r.range();
            let median = r.median();
            md += &format!(
                "| {} | {} | {} | {:.0} ({:.0}–{:.0}) | {:.2} ms | {:.2} ms | {:.1} µs | {:.1} MiB |\n",
                r.system,
                r.page,
                r.connections,
                median.requests_per_second,
                lo,
                hi,
                median.p50_ms,
                median.p99_ms,
                median.cpu_us,
                r.peak_rss_mib
            );
        }
        md += "\n| ratio (requests/s, within each round) | median | range | target |\n|---|---:|---:|---:|\n";
        for (what, system, other, target) in RATIOS {
            md += &match self.ratio(*system, *other) {
                Some((median, lo, hi)) => {
                    format!("| {what} | {median:.2}x | {lo:.2}–{hi:.2}x | {target} |\n")
                }
                None => format!("| {what} | - | - | {target} |\n"),
            };
        }
        md += "\n| demo guest | memory.grow per request (target 0) |\n|---|---:|\n";
        for (guest, grows) in &self.grows {
            md += &format!("| {guest} | {grows:.2} |\n");
        }
        md += &format!(
            "\n| RawaLite | value | target |\n|---|---:|---:|\n| RSS after 5 s of load | {:.1} MiB | |\n| RSS after {LONG_RUN} s of load | {:.1} MiB ({:+.1}%) | within 10% |\n| cold start, warm compile cache (median of 5) | {:.0} ms | ≤ 250 ms |\n| cold start, empty compile cache (median of 3) | {:.0} ms | |\n",
            self.rss_5s,
            self.rss_end,
            (self.rss_end / self.rss_5s - 1.0) * 100.0,
            self.warm_start_ms,
            self.cold_start_ms
        );
        md
    }

    pub(super) fn print(&self) {
        println!("\n{}", self.markdown());
    }

    /// Replaces the generated part of BENCHMARKS.md and the chart.
    pub(super) fn write(&self, root: &Path) -> Result<()> {
        crate::write_generated(
            root,
            "serve",
            &format!(
                "_Written by `cargo xtask bench serve` on {}._\n\n{}\n![requests/s per page](docs/bench-serve.svg)\n",
                crate::today(),
                self.markdown()
            ),
        )?;
        std::fs::create_dir_all(root.join("docs"))?;
        std::fs::write(root.join("docs/bench-serve.svg"), self.svg())?;
        println!("wrote docs/bench-serve.svg");
        Ok(())
    }

    /// A grouped bar chart of requests/s, one group per page.
    pub(super) fn svg(&self) -> String {
        let systems = [
            ("RawaLite", "#2f5bd3"),
            ("native", "#1f7a4d"),
            ("native (pool)", "#7fbf9f"),
            ("wasmtime serve", "#a15c00"),
        ];
        let pages = [
            "host 404 page",
            "static file, 52 B",
            "hello",
            "db 10 rows",
            "dashboard (signed in)",
            "db 10 rows (PostgreSQL)",
            "dashboard (signed in, PostgreSQL)",
        ];
        let max = self
            .runs
            .iter()
            .filter(|r| r.connections == CONNECTIONS)
            .map(Run::requests_per_second)
            .fold(1.0, f64::max);
        let (width, height, left, top, chart_h) = (1100.0, 340.0, 70.0, 40.0, 220.0);
        let group_w = (width - left - 20.0) / pages.len() as f64;
        let bar_w = group_w / 5.5;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">Requests per second (wrk, {CONNECTIONS} connections, loopback)</text>\n"
        );
        for i in 0..=4 {
            let value = max * i as f64 / 4.0;
            let y = top + chart_h - chart_h * i as f64 / 4.0;
            svg += &format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>\n",
                width - 20.0,
                left - 6.0,
                y + 4.0
            );
        }
        for (g, page) in pages.iter().enumerate() {
            let x0 = left + g as f64 * group_w + bar_w * 0.5;
            // The bars of the systems measured on this page, side by side.
            let mut placed = 0;
            for (system, color) in &systems {
                let Some(run) = self.find(system, page) else {
                    continue;
                };
                let h = chart_h * run.requests_per_second() / max;
                let x = x0 + placed as f64 * (bar_w + 6.0);
                placed += 1;
                svg += &format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n",
                    top + chart_h - h,
                    x + bar_w / 2.0,
                    top + chart_h - h - 4.0,
                    run.requests_per_second()
                );
            }
            svg += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{page}</text>\n",
                x0 + placed as f64 * (bar_w + 6.0) / 2.0,
                top + chart_h + 20.0
            );
        }
        for (s, (system, color)) in systems.iter().enumerate() {
            let x = left + s as f64 * 150.0;
            let y = height - 20.0;
            svg += &format!(
                "<rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{y}\">{system}</text>\n",
                y - 10.0,
                x + 18.0
            );
        }
        svg + "</svg>\n"
    }
}
