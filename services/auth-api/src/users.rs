//! The merchant users who may log in, read once from `AUTH_USERS_FILE`, and
//! the password check against their argon2id hashes.
//!
//! Verification is deliberately slow (that is the point of argon2), so it
//! runs on tokio's blocking pool, at most one per core at a time behind a
//! short queue ([`Authenticator`]), and an unknown username costs exactly as
//! much as a wrong password: it is checked against a dummy hash with the
//! same parameters.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use platform::ConfigError;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::credentials::{Password, Username};

/// The argon2id parameters of OWASP's Password Storage Cheat Sheet (first
/// of its equivalent options): m = 19 MiB (19456 KiB), t = 2, p = 1. Also
/// argon2's defaults; used for the dummy hash when the users file mixes
/// parameters.
pub fn owasp_params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters")
}

/// One row of the users file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRow {
    username: String,
    merchant_id: String,
    password_hash: String,
    /// Customers the user is linked to when first seen (see
    /// [`crate::links::seed`]); afterwards the links change through the API.
    #[serde(default)]
    customers: Vec<String>,
    /// Whether the user may create, list and revoke the merchant's API
    /// keys. A key acts for every customer, so this is the merchant
    /// administrator's right, granted here by the operator, never by a user.
    #[serde(default)]
    manages_api_keys: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserRow>,
}

struct User {
    merchant_id: String,
    customers: Vec<String>,
    manages_api_keys: bool,
    /// A PHC string already checked to parse as argon2id.
    password_hash: String,
}

/// The users file, checked: every username normalised and unique, every
/// hash an argon2id PHC string.
pub struct Users {
    by_name: HashMap<String, User>,
    dummy_hash: String,
}

impl Users {
    /// Reads `path`. Any problem is a [`ConfigError`] on `AUTH_USERS_FILE`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let fail = |problem: String| ConfigError {
            variable: "AUTH_USERS_FILE".to_owned(),
            problem: format!("{}: {problem}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses the text of a users file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (it quotes the source);
            // the first line says what is wrong.
            let message = e.message().lines().next().unwrap_or("").to_owned();
            match e.span() {
                Some(span) => format!("not valid: {message} (at byte {})", span.start),
                None => format!("not valid: {message}"),
            }
        })?;
        let mut by_name = HashMap::new();
        let mut params: Option<Params> = None;
        let mut mixed = false;
        for (index, row) in file.users.into_iter().enumerate() {
            let entry = format!("users[{index}]");
            let username = Username::parse(&row.username)
                .map_err(|e| format!("{entry}.username: {}", e.message()))?;
            if username.as_str() != row.username {
                return Err(format!(
                    "{entry}.username: must be written normalised, as {:?}",
                    username.as_str()
                ));
            }
            // Both become token claims that core-api puts into Redis key
            // names (`merchant:{mid}:created_by:{sub}:tx`); the verifier
            // refuses any other shape, so a user it would refuse cannot be
            // configured.
            if !platform::auth::is_identifier(username.as_str()) {
                return Err(format!(
                    "{entry}.username: must be 1-64 characters of a-z 0-9 _ . -"
                ));
            }
            // Key ids (`key_…`) are recorded as `created_by` like user
            // names; the prefix keeps the two apart.
            if username
                .as_str()
                .starts_with(platform::access::api_key::ID_PREFIX)
            {
                return Err(format!(
                    "{entry}.username: must not start with {:?} (API key ids do)",
                    platform::access::api_key::ID_PREFIX
                ));
            }
            if row.customers.len() > platform::access::links::MAX_CUSTOMERS_PER_USER {
                return Err(format!(
                    "{entry}.customers: at most {} per user",
                    platform::access::links::MAX_CUSTOMERS_PER_USER
                ));
            }
            if let Some(bad) = row
                .customers
                .iter()
                .position(|c| !platform::access::links::is_customer_id(c))
            {
                return Err(format!(
                    "{entry}.customers[{bad}]: must be 1-64 characters of A-Z a-z 0-9 _ . : - \
                     and not a card number"
                ));
            }
            if !platform::auth::is_identifier(&row.merchant_id) {
                return Err(format!(
                    "{entry}.merchant_id: must be 1-64 characters of A-Z a-z 0-9 _ . -"
                ));
            }
            let hash_params = argon2id_params(&row.password_hash)
                .map_err(|problem| format!("{entry}.password_hash: {problem}"))?;
            match &params {
                None => params = Some(hash_params),
                Some(seen) if *seen != hash_params => mixed = true,
                Some(_) => {}
            }
            let user = User {
                merchant_id: row.merchant_id,
                customers: row.customers,
                manages_api_keys: row.manages_api_keys,
                password_hash: row.password_hash,
            };
            if by_name.insert(username.as_str().to_owned(), user).is_some() {
                return Err(format!(
                    "{entry}.username: {:?} appears twice",
                    row.username
                ));
            }
        }
        let dummy_params = match params {
            Some(params) if !mixed => params,
            _ => owasp_params(),
        };
        if mixed {
            tracing::warn!(
                "users file mixes argon2 parameters; unknown usernames are checked with OWASP's, \
                 so login timing may tell some users apart"
            );
        }
        Ok(Self {
            by_name,
            dummy_hash: dummy_hash(dummy_params),
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The merchant of `username`, if there is such a user.
    pub fn merchant_of(&self, username: &str) -> Option<&str> {
        self.by_name.get(username).map(|u| u.merchant_id.as_str())
    }

    /// Whether `username` of `merchant` may manage the merchant's API keys.
    pub fn manages_api_keys(&self, username: &str, merchant: &str) -> bool {
        self.by_name
            .get(username)
            .is_some_and(|u| u.merchant_id == merchant && u.manages_api_keys)
    }

    /// `(merchant, username, customers)` of every user with customers to
    /// link at first sight.
    pub fn seed_links(&self) -> impl Iterator<Item = (&str, &str, &[String])> {
        self.by_name
            .iter()
            .filter(|(_, u)| !u.customers.is_empty())
            .map(|(name, u)| {
                (
                    u.merchant_id.as_str(),
                    name.as_str(),
                    u.customers.as_slice(),
                )
            })
    }
}

/// The parameters of `phc` if it is an argon2id hash argon2 can check.
fn argon2id_params(phc: &str) -> Result<Params, String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!("must be argon2id, not {}", hash.algorithm));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("has no salt or hash".to_owned());
    }
    if hash.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return Err("must be argon2 version 19 (0x13)".to_owned());
    }
    Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))
}

/// A hash of a throw-away password: what an unknown username is checked
/// against. Its result is ignored; only its cost matters.
fn dummy_hash(params: Params) -> String {
    let salt = SaltString::encode_b64(b"auth-api dummy salt").expect("valid salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"no user has this password", &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

/// A user whose password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub username: String,
    pub merchant_id: String,
}

/// Checks passwords: cloneable, with a global bound on argon2 work. At
/// most one hash per core runs at a time; a short queue of logins may wait
/// for a free core; beyond that [`Authenticator::admit`] refuses at once
/// (the route answers 503 with `Retry-After`), so a flood of junk logins
/// costs the flooder refusals instead of delaying every real login by
/// seconds, and memory stays at one 19 MiB buffer per core.
#[derive(Clone)]
pub struct Authenticator {
    users: Arc<Users>,
    hashing: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

/// A place among the logins being hashed or waiting for a core; hand it to
/// [`Authenticator::authenticate`].
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

/// Logins that may wait for a core, per core, when `AUTH_LOGIN_QUEUE` is
/// not set: a wait of at most ~8 hashes (a quarter of a second).
pub const DEFAULT_QUEUE_PER_CORE: usize = 8;

impl Authenticator {
    /// One hash per core at a time, and `queue` logins (default
    /// [`DEFAULT_QUEUE_PER_CORE`] per core) waiting for one.
    pub fn new(users: Users, queue: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let queue = queue.unwrap_or(cores * DEFAULT_QUEUE_PER_CORE);
        Self {
            users: Arc::new(users),
            hashing: Arc::new(Semaphore::new(cores)),
            admitted: Arc::new(Semaphore::new(cores + queue)),
        }
    }

    /// The users file it checks against.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// A place for one password check, or `None` when every core is busy
    /// and the queue is full.
    pub fn admit(&self) -> Option<Admission> {
        self.admitted
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Admission)
    }

    /// `Some(user)` when the password is right; `None` for a wrong password
    /// and for an unknown username alike, after the same amount of work.
    pub async fn authenticate(
        &self,
        admission: Admission,
        username: &Username,
        password: Password,
    ) -> anyhow::Result<Option<Authenticated>> {
        let user = self.users.by_name.get(username.as_str());
        let (phc, merchant) = match user {
            Some(user) => (user.password_hash.clone(), Some(user.merchant_id.clone())),
            None => (self.users.dummy_hash.clone(), None),
        };
        let hashing = self.hashing.acquire().await?;
        let matches =
            tokio::task::spawn_blocking(move || verify(password.expose().as_bytes(), &phc)).await?;
        drop((hashing, admission));
        Ok(match (matches, merchant) {
            (true, Some(merchant_id)) => Some(Authenticated {
                username: username.as_str().to_owned(),
                merchant_id,
            }),
            _ => None,
        })
    }
}

/// Whether `password` hashes to `phc` (an argon2id hash checked when the
/// users file was read). What `Argon2::verify_password` does — same
/// parameters, salt and constant-time comparison of the output — but in
/// memory from [`block_memory`].
fn verify(password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = block_memory(params.block_count());
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..])
            .map_err(Into::into)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|computed| computed == expected)
}

/// The smallest allocation glibc always maps afresh and unmaps on free: its
/// adaptive mmap threshold (which a first 19 MiB free raises to 19 MiB)
/// never exceeds 32 MiB on 64-bit systems.
const ALWAYS_MAPPED_BYTES: usize = 32 * 1024 * 1024 + 4096;

/// Zeroed memory for `blocks` argon2 blocks, in an allocation of at least
/// [`ALWAYS_MAPPED_BYTES`]: then every hash's buffer goes back to the
/// system when it is dropped, instead of staying in the malloc arena of
/// whichever blocking thread ran the hash (a burst of logins left ~450 MB
/// resident for good). Only the first `blocks` are written, so the rest of
/// the mapping never becomes resident.
fn block_memory(blocks: usize) -> Vec<Block> {
    let capacity = blocks.max(ALWAYS_MAPPED_BYTES.div_ceil(std::mem::size_of::<Block>()));
    let mut memory = Vec::with_capacity(capacity);
    memory.resize(blocks, Block::default());
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_USERS: &str = include_str!("../../../config/users.toml");

    #[test]
    fn dev_users_file_is_valid_and_uses_owasp_parameters() {
        let users = Users::parse(DEV_USERS).unwrap();
        assert_eq!(users.len(), 3);
        for user in users.by_name.values() {
            assert_eq!(
                argon2id_params(&user.password_hash).unwrap(),
                owasp_params()
            );
        }
        assert_eq!(argon2id_params(&users.dummy_hash).unwrap(), owasp_params());
    }

    #[test]
    fn verify_agrees_with_argon2() {
        use argon2::password_hash::PasswordVerifier;
        let users = Users::parse(DEV_USERS).unwrap();
        let alice = &users.by_name["alice"].password_hash;
        assert!(verify(b"password", alice));
        assert!(!verify(b"passwore", alice));
        assert!(!verify(b"", alice));
        let hash = PasswordHash::new(alice).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"password", &hash)
                .is_ok()
        );
        assert!(!verify(b"password", &users.dummy_hash));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                       ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJlZWY";
        let cases = [
            ("users = 3", "not valid"),
            (
                &format!(
                    "[[users]]\nusername = \"eve\"\nmerchant_id = \"m\"\npassword_hash = \"{argon2i}\"\n"
                ),
                "must be argon2id",
            ),
            (
                "[[users]]\nusername = \"eve\"\nmerchant_id = \"m\"\npassword_hash = \"plain\"\n",
                "not a PHC string",
            ),
            (
                "[[users]]\nusername = \"Eve\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\n",
                "normalised",
            ),
            (
                "[[users]]\nusername = \"eve\"\nmerchant_id = \"acme:status\"\npassword_hash = \"x\"\n",
                "merchant_id: must be 1-64 characters",
            ),
            (
                "[[users]]\nusername = \"eve\"\nmerchant_id = \" m\"\npassword_hash = \"x\"\n",
                "merchant_id: must be 1-64 characters",
            ),
            (
                "[[users]]\nusername = \"key_1\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\n",
                "must not start with \"key_\"",
            ),
            (
                "[[users]]\nusername = \"eve\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\ncustomers = [\"cus 1\"]\n",
                "customers[0]: must be",
            ),
            (
                "[[users]]\nusername = \"eve\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\ncustomers = [\"4242424242424242\"]\n",
                "customers[0]: must be",
            ),
            (
                "[[users]]\nusername = \"eve:x\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\n",
                "username: must be 1-64 characters",
            ),
            (
                "[[users]]\nusername = \"\u{e9}ve\"\nmerchant_id = \"m\"\npassword_hash = \"x\"\n",
                "username: must be 1-64 characters",
            ),
        ];
        for (text, expected) in cases {
            let error = Users::parse(text).err().expect(text);
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }
}
