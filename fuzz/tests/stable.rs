//! The fuzz targets on the stable toolchain: each target's seed corpus, then a bounded,
//! deterministic stream of generated and mutated inputs (`REKEY_FUZZ_CASES`, default
//! 20,000 per target, from `REKEY_FUZZ_SEED`). A panic or a slow input fails the test
//! and is saved under `fuzz/artifacts/<target>/`.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml`

use rekey_fuzz::harness;

fn run(name: &str) {
    let plan = rekey_fuzz::plan(name).expect("a known target");
    let report = harness::run(plan, harness::cases(), harness::seed());
    eprintln!(
        "{name}: {} seeds + {} generated inputs in {:.1?}, no panic; slowest {:.1?} ({} bytes)",
        report.seeds, report.generated, report.total, report.slowest, report.slowest_len
    );
}

#[test]
fn config_text() {
    run("config_text");
}

#[test]
fn config_structured() {
    run("config_structured");
}

#[test]
fn leaked_extract() {
    run("leaked_extract");
}

#[test]
fn file_store() {
    run("file_store");
}

#[test]
fn exec_response() {
    run("exec_response");
}

/// Every template is accepted as written (the structured target also checks this for
/// inputs without mutations).
#[test]
fn config_templates_are_valid() {
    for (i, template) in rekey_fuzz::config::TEMPLATES.iter().enumerate() {
        assert!(
            rekey_fuzz::config::check_parse(template).is_some(),
            "template {i} is refused:\n{template}"
        );
    }
}

/// Every target has a binary, a seed corpus, and is listed in the plans.
#[test]
fn every_target_has_seeds_and_a_binary() {
    for plan in rekey_fuzz::PLANS {
        assert!(
            !harness::seeds(plan.name).is_empty(),
            "{}: no seeds in {}",
            plan.name,
            harness::corpus_dir(plan.name).display()
        );
        let bin = harness::fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", plan.name));
        assert!(bin.is_file(), "{}: no {}", plan.name, bin.display());
    }
}
