//! Looks at a service's instances in ZooKeeper, as `apns-relay discover` will:
//!
//! ```sh
//! cargo run -p discovery --example discover -- 127.0.0.1:2181 /services/apns-relay
//! cargo run -p discovery --example discover -- 127.0.0.1:2181 /services/apns-relay --follow 60s
//! ```
//!
//! One line per instance (and per malformed node); with `--follow`, the list again on every
//! change until the duration ends. A bad argument or an unreachable ensemble: one line, exit 2.

use std::process::ExitCode;

use discovery::{ServicePath, ServiceWatch, WatchOptions, ZkConfig};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("discover: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ensemble, path, follow) = match args.as_slice() {
        [e, p] => (e, p, None),
        [e, p, flag, d] if flag == "--follow" => (
            e,
            p,
            Some(common::duration::parse(d).map_err(|e| format!("--follow: {e}"))?),
        ),
        _ => return Err("usage: discover ENSEMBLE /base/service [--follow DURATION]".into()),
    };
    let path = ServicePath::parse(path).map_err(|e| e.to_string())?;
    let watch = ServiceWatch::start(&ZkConfig::new(ensemble), &path, WatchOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let print = |watch: &ServiceWatch| {
        for line in watch.instances().describe() {
            println!("{line}");
        }
    };
    print(&watch);
    let Some(follow) = follow else {
        return Ok(());
    };
    let mut changes = watch.subscribe();
    let end = tokio::time::sleep(follow);
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => return Ok(()),
            r = changes.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                println!("--");
                print(&watch);
            }
        }
    }
}
