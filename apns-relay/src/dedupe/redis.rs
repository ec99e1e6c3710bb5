//! The shared dedupe store: Redis, so several relay instances dedupe together. Each operation
//! is one command or one Lua script, so it is atomic on the server; keys carry the TTL
//! (`PX`). In-flight claims hold a lease inside the record: a relay that finds another
//! instance's claim waits for it, and takes it over as `unknown` once the lease is over.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::{
    decode_record, encode_record, now_ms, Claim, Key, Record, Store, StoreError, StoreFuture,
};

const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false";

const REPLACE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// The Redis-backed store; see the module doc.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    ttl_ms: u64,
    claim: Script,
    replace: Script,
}

fn rerr(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// Connects (`redis://…` or `redis+unix://…`).
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<RedisStore, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| StoreError::Redis(format!("{url}: {e}")))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| StoreError::Redis(format!("{url}: {e}")))?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            ttl_ms: ttl.as_millis().max(1) as u64,
            claim: Script::new(CLAIM),
            replace: Script::new(REPLACE),
        })
    }

    fn key(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.encode())
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let v = encode_record(&Record::InFlight {
                lease_until_ms: now_ms() + lease.as_millis() as u64,
            });
            let mut conn = self.conn.clone();
            let got: Option<Vec<u8>> = self
                .claim
                .key(self.key(key))
                .arg(v)
                .arg(self.ttl_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?;
            match got {
                None => Ok(Claim::Claimed),
                Some(bytes) => decode_record(&bytes).map(Claim::Existing),
            }
        })
    }

    fn finish<'a>(&'a self, key: &'a Key, record: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(encode_record(record))
                .arg("PX")
                .arg(self.ttl_ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(rerr)
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a Key,
        from: &'a Record,
        to: &'a Record,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: i64 = self
                .replace
                .key(self.key(key))
                .arg(encode_record(from))
                .arg(encode_record(to))
                .arg(self.ttl_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?;
            Ok(n == 1)
        })
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let got: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            got.map(|b| decode_record(&b)).transpose()
        })
    }

    fn release<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("DEL")
                .arg(self.key(key))
                .query_async::<()>(&mut conn)
                .await
                .map_err(rerr)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(rerr)
        })
    }

    fn get_meta<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("GET")
                .arg(format!("{}meta:{name}", self.prefix))
                .query_async(&mut conn)
                .await
                .map_err(rerr)
        })
    }

    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("SET")
                .arg(format!("{}meta:{name}", self.prefix))
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async::<()>(&mut conn)
                .await
                .map_err(rerr)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real redis-server (the test kit's, shared with the integration tests).
    async fn redis_server() -> testkit::servers::Redis {
        testkit::servers::Redis::start()
    }

    #[tokio::test]
    async fn contract_holds() {
        let server = redis_server().await;
        let store = RedisStore::connect(server.url(), "t:", Duration::from_secs(60))
            .await
            .unwrap();
        super::super::contract::check(&store).await;
    }

    #[tokio::test]
    async fn two_instances_see_one_claim() {
        let server = redis_server().await;
        let a = RedisStore::connect(server.url(), "t:", Duration::from_secs(60))
            .await
            .unwrap();
        let b = RedisStore::connect(server.url(), "t:", Duration::from_secs(60))
            .await
            .unwrap();
        let k = Key::new("t", "aa", "1");
        assert_eq!(
            a.claim(&k, Duration::from_secs(5)).await.unwrap(),
            Claim::Claimed
        );
        assert!(matches!(
            b.claim(&k, Duration::from_secs(5)).await.unwrap(),
            Claim::Existing(Record::InFlight { .. })
        ));
    }

    #[tokio::test]
    async fn ttl_expires_keys() {
        let server = redis_server().await;
        let store = RedisStore::connect(server.url(), "t:", Duration::from_millis(20))
            .await
            .unwrap();
        let k = Key::new("t", "aa", "1");
        store.claim(&k, Duration::from_secs(5)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.get(&k).await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "key never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
