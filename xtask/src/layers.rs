//! The host's layering, checked: `host/src/lib.rs` lists its modules in
//! layer order between `<!-- layers -->` and `<!-- /layers -->`, and a
//! module may import (`crate::…`, or `super::…` out of its own folder)
//! only modules listed before it. Within one module, its parts import one
//! another in no circle. Comments, `#[cfg(test)]` code and `tests` modules
//! do not count: a test may reach anything.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Fails, naming each import that goes up or round.
pub fn check(root: &Path) -> Result<()> {
    let src = root.join("host/src");
    let lib = std::fs::read_to_string(src.join("lib.rs"))?;
    let order = order(&lib)?;
    let mut files = Vec::new();
    walk(&src, &src, &mut files)?;
    let problems = problems(&order, &files);
    if !problems.is_empty() {
        bail!(
            "imports against the layers of host/src/lib.rs:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// The modules in layer order, as lib.rs lists them.
fn order(lib: &str) -> Result<Vec<String>> {
    let start = lib
        .find("<!-- layers -->")
        .context("host/src/lib.rs lists no <!-- layers -->")?;
    let end = lib[start..]
        .find("<!-- /layers -->")
        .context("host/src/lib.rs has no <!-- /layers -->")?;
    Ok(lib[start..start + end]
        .lines()
        .skip(1)
        .flat_map(|line| line.trim_start_matches("//!").split_whitespace())
        .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect())
}

/// Every `.rs` file under `dir`: its module path and its text.
fn walk(src: &Path, dir: &Path, out: &mut Vec<(Vec<String>, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(src, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src)?.with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.push((module, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// Each import against `order`, and each circle between a module's parts.
fn problems(order: &[String], files: &[(Vec<String>, String)]) -> Vec<String> {
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut problems = BTreeSet::new();
    // Between the parts of one module: part → parts it imports.
    let mut parts: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, text) in files {
        let Some(top) = module.first() else { continue };
        // The CLI is the binary's, above every layer; tests may reach
        // anything.
        if top == "cli" || module.iter().any(|m| m == "tests") {
            continue;
        }
        let Some(own) = rank(top) else {
            problems.insert(format!("{top} is not in the layers of host/src/lib.rs"));
            continue;
        };
        for target in imports(module, text) {
            let Some(other) = target.first() else {
                continue;
            };
            if other != top {
                let name = module.join("::");
                match rank(other) {
                    Some(r) if r < own => {}
                    Some(_) => {
                        problems.insert(format!("{name} imports {other}, a layer above"));
                    }
                    None => {
                        problems.insert(format!(
                            "{name} imports {other}, which the layers do not list"
                        ));
                    }
                }
                continue;
            }
            // Within `top`: from the part of `module` one level down from
            // their shared parent to the part of `target` there.
            let shared = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if shared < module.len() && shared < target.len() {
                parts
                    .entry(module[..=shared].to_vec())
                    .or_default()
                    .insert(target[..=shared].to_vec());
            }
        }
    }
    for circle in circles(&parts) {
        problems.insert(format!("an import circle: {}", circle.join(" → ")));
    }
    problems.into_iter().collect()
}

/// The module paths `text` (the file of `module`) imports, outside
/// comments and tests.
fn imports(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            // `rawalite_host::…` and the like are not this crate.
            if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            found.push(path(&line[i + "crate::".len()..]));
        }
        if let Some(i) = line.find("super::")
            && !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            let mut rest = &line[i..];
            let mut base = module.to_vec();
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            base.extend(path(rest));
            found.push(base);
        }
    }
    found.retain(|p| !p.is_empty());
    found
}

/// The leading lower-case segments of a path (`a::b::Type` → `[a, b]`).
fn path(text: &str) -> Vec<String> {
    text.split("::")
        .map_while(|seg| {
            let name: String = seg
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.len() == seg.len())
            .then_some(name)
        })
        .collect()
}

/// The circles of `graph`, each once, found without recursion.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Paths from `start`, breadth first; a path back to it is a circle.
        let mut paths = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = paths.pop() {
            let last = path.last().expect("paths are never empty");
            for next in graph.get(last).into_iter().flatten() {
                if next == start {
                    let mut circle: Vec<String> = path.iter().map(|m| m.join("::")).collect();
                    // The same circle from any start reads the same.
                    let least = (0..circle.len()).min_by_key(|&i| &circle[i]).unwrap_or(0);
                    circle.rotate_left(least);
                    circle.push(circle[0].clone());
                    found.insert(circle);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    paths.push(longer);
                }
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(module: &str, text: &str) -> (Vec<String>, String) {
        (
            module.split("::").map(str::to_owned).collect(),
            text.to_owned(),
        )
    }

    fn order() -> Vec<String> {
        super::order("//! <!-- layers -->\n//! units net\n//! auth\n//! <!-- /layers -->").unwrap()
    }

    #[test]
    fn imports_down_pass() {
        let files = [
            file(
                "auth",
                "use crate::units::Size;\nuse crate::net::{Address, Network};",
            ),
            file("net", "use crate::units::Size;"),
        ];
        assert!(problems(&order(), &files).is_empty());
    }

    #[test]
    fn an_import_up_or_unlisted_is_named() {
        let files = [
            file("units", "fn f() { crate::auth::check(); }"),
            file("net", "use crate::server::x;"),
        ];
        assert_eq!(
            problems(&order(), &files),
            [
                "net imports server, which the layers do not list",
                "units imports auth, a layer above"
            ]
        );
    }

    #[test]
    fn comments_tests_and_other_crates_do_not_count() {
        let files = [
            file(
                "units",
                "//! see [`crate::auth`]\nuse rawalite_host::auth;\n#[cfg(test)]\nmod tests { use crate::auth; }",
            ),
            file("net::tests", "use crate::auth::Auth;"),
        ];
        assert!(problems(&order(), &files).is_empty());
    }

    #[test]
    fn a_circle_between_parts_is_named() {
        let files = [
            file("auth::store", "use super::limiter::Key;"),
            file("auth::limiter", "use crate::auth::store::Store;"),
            file("auth::password", "use super::store::Store;"),
        ];
        assert_eq!(
            problems(&order(), &files),
            ["an import circle: auth::limiter → auth::store → auth::limiter"]
        );
    }
}
