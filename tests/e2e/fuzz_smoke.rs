//! A smoke run of every fuzz target in the test command: the target functions of `fuzz/` (the same
//! code `cargo fuzz` drives) run over every seed of `fuzz/corpus/<target>/seed-*` (and the CSR
//! fixtures), then over mutations of them for a few seconds each. No coverage guidance (that needs
//! libFuzzer's instrumented build, `fuzz/run-smoke.sh`); a panic is a finding: the input is written to
//! `target/fuzz-smoke/` and the test fails naming it and the seed that reproduces the run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("csr", fuzz::targets::csr),
    ("hocon_auth", fuzz::targets::hocon_auth),
    ("legacy_auth", fuzz::targets::legacy_auth),
    ("autosign_conf", fuzz::targets::autosign_conf),
    ("certname", fuzz::targets::certname),
    ("routing", fuzz::targets::routing),
];

/// Time spent mutating per target (after every seed ran once).
const MUTATION_TIME: Duration = Duration::from_secs(3);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut dirs = vec![root().join("fuzz/corpus").join(target)];
    if target == "csr" {
        dirs.push(root().join("fixtures/csr"));
    }
    let mut out = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("seed-") || p.extension().is_some_and(|x| x == "pem")
            })
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| std::fs::read(p).unwrap()));
    }
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to eight edits of the kinds libFuzzer's default mutators make: byte flips and random bytes,
/// insertions, deletions, duplicated ranges, interesting values, splices with another seed.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    const INTERESTING: [&[u8]; 10] = [
        b"\0",
        b"\xff",
        b"\x80",
        b"\x7f",
        b"..",
        b"%2e%2e%2f",
        b"\r\n",
        b"{",
        b"\"",
        b"*",
    ];
    let mut v = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.insert(at, rng.next() as u8),
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(64)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            5 => {
                let val = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, val.iter().copied());
            }
            _ if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(256)).min(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[start..end]);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn run_one(name: &str, target: Target, input: &[u8], seed: u64) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        let dir = root().join("target/fuzz-smoke");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}-{seed}"));
        std::fs::write(&file, input).unwrap();
        panic!(
            "fuzz target {name} panicked on {} (run seed {seed}); reproduce with \
             `cargo fuzz run {name} {}` in fuzz/",
            file.display(),
            file.display()
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_their_mutations() {
    let seed = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("fuzz smoke seed {seed} (FUZZ_SMOKE_SEED={seed} repeats this run)");
    let mut report = Vec::new();
    for (name, target) in TARGETS {
        let corpus = seeds(name);
        for input in &corpus {
            run_one(name, target, input, seed);
        }
        let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        let mut runs = corpus.len();
        while started.elapsed() < MUTATION_TIME {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let input = mutate(&mut rng, base, other);
            run_one(name, target, &input, seed);
            runs += 1;
        }
        report.push(format!("{name}: {} seeds, {runs} runs", corpus.len()));
    }
    println!("fuzz smoke: {}", report.join("; "));
}
