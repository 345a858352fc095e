//! Logins per second: `clients` threads each connect, LOGIN as a random one
//! of `accounts` users (`u<i>`, password `pw<i>`, `{PLAIN}` in the
//! passwd-file of both servers: the figure is the server's, not the hash's)
//! and LOGOUT, for `seconds`; p50/p99 of connect+greeting+LOGIN. The first
//! login of the run is timed alone (the servers were just started, so it
//! includes whatever a server does on its first lookup). Connections come
//! from several loopback addresses so that per-address limits are not what
//! is measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::Conn;

/// One server's figures at one concurrency.
pub struct Logins {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub failed: usize,
}

fn one_login(addr: SocketAddr, from: u8, user: usize) -> Result<Duration> {
    let t = Instant::now();
    let local: SocketAddr = ([127, 0, 0, from], 0).into();
    let mut c = Conn::open_from(addr, local)?;
    c.cmd(&format!("LOGIN u{user} pw{user}"))?;
    let took = t.elapsed();
    let _ = c.cmd("LOGOUT");
    Ok(took)
}

/// The first login of the run, timed alone.
pub fn first_login(addr: SocketAddr, accounts: usize) -> Result<Duration> {
    one_login(addr, 2, accounts / 2)
}

/// `clients` threads logging in and out for `seconds`.
pub fn storm(addr: SocketAddr, accounts: usize, clients: usize, seconds: u64) -> Logins {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let results = Arc::new(std::sync::Mutex::new((Vec::new(), 0usize)));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let results = results.clone();
            std::thread::spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1).wrapping_mul(0xbf58_476d);
                let (mut lat, mut failed) = (Vec::new(), 0usize);
                let from = 10 + (i % 200) as u8;
                while Instant::now() < deadline {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let user = (seed % accounts as u64) as usize;
                    match one_login(addr, from, user) {
                        Ok(d) => lat.push(d),
                        Err(_) => failed += 1,
                    }
                }
                let mut r = results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                r.0.extend(lat);
                r.1 += failed;
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let (mut lat, failed) = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    lat.sort();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Logins {
        per_sec: lat.len() as f64 / seconds as f64,
        p50: at(0.5),
        p99: at(0.99),
        failed,
    }
}
