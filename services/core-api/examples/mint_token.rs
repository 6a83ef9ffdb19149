//! Prints a merchant token signed with `JWT_SECRET`, for load tests that
//! outlive the normal 30-second tokens: `mint_token [user] [merchant] [ttl_secs]`
//! (defaults alice, acme, 600; at most 3600, the longest lifetime the
//! verifier accepts).

use std::time::Duration;

use platform::auth::{JwtSecret, TokenIssuer};

fn main() {
    let secret = std::env::var("JWT_SECRET").expect("set JWT_SECRET");
    let secret = JwtSecret::new(secret).unwrap_or_else(|e| panic!("JWT_SECRET {e}"));
    let mut args = std::env::args().skip(1);
    let user = args.next().unwrap_or_else(|| "alice".to_owned());
    let merchant = args.next().unwrap_or_else(|| "acme".to_owned());
    let ttl: u64 = args
        .next()
        .map_or(600, |t| t.parse().expect("ttl_secs is a number"));
    let (token, _) = TokenIssuer::new(&secret, Duration::from_secs(ttl)).issue(&user, &merchant);
    println!("{token}");
}
