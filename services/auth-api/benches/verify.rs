//! What a token and a login cost, on this machine:
//!
//! * verifying a token with the shared `platform::auth::TokenVerifier`
//!   (what core-api does on every request), in µs per token;
//! * issuing one;
//! * one argon2id password check with the dev users' (OWASP) parameters,
//!   which bounds logins per second per core.
//!
//! `cargo bench -p auth-api --bench verify` (a plain timing loop: no
//! statistics framework to compile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::{Argon2, Params};
use platform::auth::{JwtSecret, TokenIssuer, TokenVerifier};

fn time_per_op(iterations: u32, mut op: impl FnMut()) -> Duration {
    // Warm up caches and the allocator before timing.
    for _ in 0..iterations.div_ceil(10) {
        op();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    started.elapsed() / iterations
}

fn main() {
    let secret = JwtSecret::new("bench-secret-bench-secret-bench-secret").unwrap();
    let issuer = TokenIssuer::new(&secret, Duration::from_secs(30));
    let verifier = TokenVerifier::new(&secret);
    let (token, _) = issuer.issue("alice", "acme");

    let verify = time_per_op(200_000, || {
        black_box(verifier.verify(black_box(&token)).unwrap());
    });
    println!(
        "token verification: {:.2} µs/token ({:.0} tokens/s on one core)",
        verify.as_secs_f64() * 1e6,
        1.0 / verify.as_secs_f64()
    );

    let forged = format!("{}x", &token[..token.len() - 1]);
    let reject = time_per_op(200_000, || {
        black_box(verifier.verify(black_box(&forged)).unwrap_err());
    });
    println!(
        "forged-token rejection: {:.2} µs/token",
        reject.as_secs_f64() * 1e6
    );

    let issue = time_per_op(200_000, || {
        black_box(issuer.issue("alice", "acme"));
    });
    println!("token issuing: {:.2} µs/token", issue.as_secs_f64() * 1e6);

    let users = include_str!("../../../config/users.toml");
    let phc = users
        .lines()
        .find_map(|line| line.strip_prefix("password_hash = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a hash in config/users.toml");
    let hash = PasswordHash::new(phc).unwrap();
    let params = Params::try_from(&hash).unwrap();
    let check = time_per_op(50, || {
        black_box(
            Argon2::default()
                .verify_password(b"password", &hash)
                .is_ok(),
        );
    });
    println!(
        "argon2id check (m={} KiB, t={}, p={}): {:.1} ms ({:.0} checks/s per core)",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        check.as_secs_f64() * 1e3,
        1.0 / check.as_secs_f64()
    );
}
