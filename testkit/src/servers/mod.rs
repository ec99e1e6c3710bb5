//! Outside servers tests start for real (mosquitto, nginx, redis, ZooKeeper): each on a private directory (and a private loopback
//! address when it needs a TCP port), stopped and cleaned up when its handle drops.
//! `scripts/test.sh` installs them; a missing one fails the test with that hint.

pub mod mosquitto;
pub mod nginx;
pub mod redis;
pub mod zookeeper;

pub use mosquitto::Mosquitto;
pub use nginx::Nginx;
pub use redis::Redis;
pub use zookeeper::ZooKeeper;
