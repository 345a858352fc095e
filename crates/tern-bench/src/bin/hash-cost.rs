//! What one password check costs, per scheme, on this machine: the ceiling
//! a CPU-bound login rate meets (`cargo run --release -p tern-bench --bin
//! hash-cost`). Prints milliseconds per check, one thread.

use std::time::Instant;

fn per_check(stored: &str, rounds: u32) -> anyhow::Result<f64> {
    let t = Instant::now();
    for _ in 0..rounds {
        anyhow::ensure!(tern_auth::scheme::verify(stored, b"pw1")?, "no match");
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds))
}

fn main() -> anyhow::Result<()> {
    let sha = tern_auth::scheme::hash_sha512_crypt("pw1")?;
    let argon = tern_auth::scheme::hash_argon2id(b"pw1")?;
    println!("| scheme | ms per check, one thread |");
    println!("| --- | --- |");
    println!("| {{PLAIN}} | {:.4} |", per_check("{PLAIN}pw1", 10_000)?);
    println!(
        "| SSHA512 | {:.4} |",
        per_check(&tern_auth::scheme::hash_ssha512(b"pw1"), 10_000)?
    );
    // glibc's crypt(3) wrote it (tern pw does not write this old scheme).
    println!(
        "| MD5-CRYPT | {:.3} |",
        per_check("{MD5-CRYPT}$1$qrCECrN7$TlUG4bjpV2OguhzBnjPr21", 1_000)?
    );
    println!(
        "| SHA512-CRYPT (5,000 rounds) | {:.2} |",
        per_check(&sha, 200)?
    );
    println!(
        "| ARGON2ID (tern pw's parameters) | {:.2} |",
        per_check(&argon, 20)?
    );
    Ok(())
}
