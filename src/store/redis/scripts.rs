//! The Lua scripts of the store: each operation is one script on one key,
//! run atomically inside Redis.

use std::sync::LazyLock;

use redis::Script;

/// Claims a free key, or returns what it holds. One round trip.
///
/// A key's value is one binary string: `F` or `C`, the 32-byte fingerprint,
/// then the owner's token (in flight, as decimal text) or the encoded record
/// (completed). An in-flight key expires with its lease, a completed one with
/// its TTL: Redis itself forgets them (`PX`).
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], 'F' .. ARGV[1] .. ARGV[2], 'PX', ARGV[3])
return false
";

/// Shared prologue: is ARGV[1] the token of the live in-flight claim?
macro_rules! owned_by_token {
    ($then:literal) => {
        concat!(
            r"
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, 1) ~= 'F' or string.sub(held, 34) ~= ARGV[1] then
  return 0
end
",
            $then,
            "\nreturn 1\n"
        )
    };
}

/// Completes the claim of token ARGV[1] with the record ARGV[2] for ARGV[3] ms.
/// A key that already holds exactly that record answers 1 too: a record sent
/// again (its replication was not acknowledged the first time) succeeds
/// without writing, so it can be acknowledged on its second try.
const RECORD: &str = concat!(
    "if redis.call('GET', KEYS[1]) == ARGV[2] then return 1 end\n",
    owned_by_token!("redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])")
);
/// Deletes the claim of token ARGV[1].
const RELEASE: &str = owned_by_token!("redis.call('DEL', KEYS[1])");
/// Extends the lease of token ARGV[1] to ARGV[2] ms from now.
const RENEW: &str = owned_by_token!("redis.call('PEXPIRE', KEYS[1], ARGV[2])");
/// The key's value and its time to live in ms, read together; nil if absent.
const INSPECT: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then return false end
return {held, redis.call('PTTL', KEYS[1])}
";
/// Answers 1 if token ARGV[1] holds the live in-flight claim.
const OWNED: &str = owned_by_token!("");
/// Deletes the key whatever it holds; answers how many keys went (0 or 1).
const FORGET: &str = "return redis.call('DEL', KEYS[1])";

pub(super) static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM));
pub(super) static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD));
pub(super) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
pub(super) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
pub(super) static INSPECT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(INSPECT));
pub(super) static FORGET_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET));
pub(super) static OWNED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OWNED));
