//! The README's flag tables agree with the binaries' `--help`: every flag a
//! table names exists, with the default the table gives (durations compared
//! as durations: `60s` is `1m`). The tables cannot drift from the code.

use std::collections::HashMap;
use std::process::Command;

use ringlb_testkit::bin;

/// `--flag` → its `[default: ...]` (None when it has none) from `--help`.
fn help_defaults(binary: &str) -> HashMap<String, Option<String>> {
    let out = Command::new(bin(binary))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{binary} --help failed");
    let text = String::from_utf8(out.stdout).expect("utf-8 help");
    let mut flags = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name = rest.split([' ', '=']).next().unwrap_or_default();
            current = Some(format!("--{name}"));
            flags.insert(format!("--{name}"), None);
        }
        if let (Some(flag), Some(at)) = (&current, line.find("[default: ")) {
            let value = &line[at + "[default: ".len()..];
            let value = value.split(']').next().unwrap_or_default().to_owned();
            flags.insert(flag.clone(), Some(value));
        }
    }
    flags
}

/// The `| `--flag` | default | ... |` rows of the README section `heading`.
fn readme_rows(heading: &str) -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    section[..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells.get(1)?.strip_prefix("`--")?.strip_suffix('`')?;
            Some((format!("--{flag}"), (*cells.get(2)?).to_owned()))
        })
        .collect()
}

fn same_default(readme: &str, help: Option<&str>) -> bool {
    let readme = readme
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches('`');
    match help {
        None => readme == "off",
        Some(help) => {
            readme == help
                || matches!(
                    (humantime::parse_duration(readme), humantime::parse_duration(help)),
                    (Ok(a), Ok(b)) if a == b
                )
        }
    }
}

fn check(binary: &str, heading: &str) {
    check_at_least(binary, heading, 5);
}

/// [`check`] for a section whose table has at least `min_rows` rows.
fn check_at_least(binary: &str, heading: &str, min_rows: usize) {
    let help = help_defaults(binary);
    let rows = readme_rows(heading);
    assert!(rows.len() >= min_rows, "{heading}: only {rows:?}");
    for (flag, default) in rows {
        let Some(actual) = help.get(&flag) else {
            panic!("README ({heading}) names {flag}, which `{binary} --help` does not have");
        };
        assert!(
            same_default(&default, actual.as_deref()),
            "README ({heading}) says {flag} defaults to {default:?}; `{binary} --help` says {actual:?}"
        );
    }
}

#[test]
fn the_control_plane_table_matches_its_help() {
    check("control-plane", "Control plane");
}

#[test]
fn the_data_plane_table_matches_its_help() {
    check("data-plane", "Data plane");
}

#[test]
fn the_ringctl_table_matches_its_help() {
    check_at_least("ringctl", "Operators", 3);
}

#[test]
fn a_wrong_default_would_be_caught() {
    assert!(!same_default("30s", Some("1s")));
    assert!(same_default("60s", Some("1m")));
    assert!(same_default("`127.0.0.1:5100`", Some("127.0.0.1:5100")));
    assert!(same_default("off", None));
    assert!(!same_default("off", Some("3")));
    assert!(same_default("65536 (header lines)", Some("65536")));
}
