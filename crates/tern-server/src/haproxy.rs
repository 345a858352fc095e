//! HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), on the
//! listeners an operator puts behind a load balancer: the balancer sends
//! the client's real address before anything else, so that the limits,
//! the failed-login ledger and the logs see the client and not the
//! balancer. Accepted only from `haproxy.trusted_networks`; anyone else
//! could claim any address.
//!
//! The header is read without reading past it: on an implicit-TLS
//! listener the client's TLS hello follows at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 1 header (the specification's figure).
const V1_MAX: usize = 107;

/// Longest version 2 address block with its TLVs that is read; HAProxy's
/// TLVs (ALPN, SNI, TLS details) stay far below it.
const V2_MAX_BODY: usize = 1024;

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a PROXY header, or a malformed one.
    #[error("not a valid PROXY protocol header: {0}")]
    Malformed(&'static str),
}

fn bad(why: &'static str) -> HeaderError {
    HeaderError::Malformed(why)
}

/// Parses a version 1 line (`PROXY TCP4 src dst sport dport\r\n`): the
/// client's address, or `None` for `PROXY UNKNOWN`.
///
/// # Errors
/// [`HeaderError`] for anything else.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| bad("not ASCII"))?;
    let text = text.strip_suffix("\r\n").ok_or_else(|| bad("no CRLF"))?;
    let mut f = text.split(' ');
    if f.next() != Some("PROXY") {
        return Err(bad("no PROXY"));
    }
    let family = f.next().ok_or_else(|| bad("no family"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let (src, _dst, sport, _dport) = (
        f.next().ok_or_else(|| bad("no source"))?,
        f.next().ok_or_else(|| bad("no destination"))?,
        f.next().ok_or_else(|| bad("no source port"))?,
        f.next().ok_or_else(|| bad("no destination port"))?,
    );
    if f.next().is_some() {
        return Err(bad("trailing fields"));
    }
    let ip: IpAddr = match family {
        "TCP4" => IpAddr::V4(src.parse::<Ipv4Addr>().map_err(|_| bad("source"))?),
        "TCP6" => IpAddr::V6(src.parse::<Ipv6Addr>().map_err(|_| bad("source"))?),
        _ => return Err(bad("family")),
    };
    // Ports are decimal without leading zeros or signs.
    if sport.is_empty() || !sport.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("source port"));
    }
    let port: u16 = sport.parse().map_err(|_| bad("source port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The client's address; `None` for the balancer's own connection
    /// (LOCAL, UNKNOWN, or no address family).
    pub client: Option<SocketAddr>,
    /// The client reached the balancer over TLS, which the balancer ended
    /// (a v2 `PP2_TYPE_SSL` TLV with `PP2_CLIENT_SSL`): the connection
    /// counts as protected for the cleartext policy, though it has no TLS
    /// channel of tern's to bind SASL to.
    pub tls: bool,
}

/// The v2 TLV type of the TLS details, and its "client used TLS" bit.
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

/// Parses a version 2 header's last four bytes of the fixed part
/// (`ver_cmd`, `family`, and the length) and its body.
///
/// # Errors
/// [`HeaderError`] for a version, command or family the specification
/// does not define, or a body too short for its addresses.
pub fn parse_v2(ver_cmd: u8, family: u8, body: &[u8]) -> Result<Header, HeaderError> {
    if ver_cmd >> 4 != 2 {
        return Err(bad("version"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(Header::default()),
        1 => {}
        _ => return Err(bad("command")),
    }
    let (client, used) = match family {
        // TCP (or UDP) over IPv4: src, dst, sport, dport.
        0x11 | 0x12 => {
            let a = body.get(..12).ok_or_else(|| bad("short IPv4 block"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            (Some(SocketAddr::new(IpAddr::V4(ip), port)), 12)
        }
        0x21 | 0x22 => {
            let a = body.get(..36).ok_or_else(|| bad("short IPv6 block"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            (
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)),
                36,
            )
        }
        0x31 | 0x32 => (None, 216.min(body.len())),
        // UNSPEC: no address to take.
        0x00 => (None, 0),
        _ => return Err(bad("family")),
    };
    // TLVs follow the addresses: type, 2-byte length, value.
    let mut tls = false;
    let mut rest = &body[used..];
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let value = rest.get(3..3 + len).ok_or_else(|| bad("TLV length"))?;
        if rest[0] == PP2_TYPE_SSL {
            tls |= value.first().is_some_and(|c| c & PP2_CLIENT_SSL != 0);
        }
        rest = &rest[3 + len..];
    }
    Ok(Header { client, tls })
}

/// Reads the header from `stream`, within `timeout`, never past its end.
///
/// # Errors
/// A malformed header, a timeout, or a read error, as text for the log.
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Header, String> {
    tokio::time::timeout(timeout, async {
        let mut head = [0u8; 5];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        if &head == b"PROXY" {
            let mut line = head.to_vec();
            while !line.ends_with(b"\r\n") {
                if line.len() >= V1_MAX {
                    return Err("PROXY v1 line too long".to_owned());
                }
                let b = stream.read_u8().await.map_err(|e| e.to_string())?;
                line.push(b);
            }
            return parse_v1(&line)
                .map(|client| Header { client, tls: false })
                .map_err(|e| e.to_string());
        }
        if head != V2_SIGNATURE[..5] {
            return Err(bad("no PROXY signature").to_string());
        }
        let mut rest = [0u8; 11];
        stream
            .read_exact(&mut rest)
            .await
            .map_err(|e| e.to_string())?;
        if rest[..7] != V2_SIGNATURE[5..] {
            return Err(bad("no PROXY v2 signature").to_string());
        }
        let len = usize::from(u16::from_be_bytes([rest[9], rest[10]]));
        if len > V2_MAX_BODY {
            return Err(format!("PROXY v2 header of {len} bytes"));
        }
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        parse_v2(rest[7], rest[8], &body).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "no PROXY header within the timeout".to_owned())?
}

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    net: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    ///
    /// # Errors
    /// A text for the operator.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: not an address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
        };
        Ok(Network { net, prefix })
    }

    /// 127.0.0.0/8.
    pub fn loopback_v4() -> Network {
        Network {
            net: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
            prefix: 8,
        }
    }

    /// ::1.
    pub fn loopback_v6() -> Network {
        Network {
            net: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
        }
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 143\r\n").unwrap(),
            Some("203.0.113.7:56324".parse().unwrap())
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 993\r\n").unwrap(),
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap(),
            None
        );
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 143"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"GET / HTTP/1.0\r\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_2_blocks() {
        let v4 = [203, 0, 113, 7, 10, 0, 0, 1, 0xdc, 0x04, 0, 143];
        let h = parse_v2(0x21, 0x11, &v4).unwrap();
        assert_eq!(h.client, Some("203.0.113.7:56324".parse().unwrap()));
        assert!(!h.tls);
        assert_eq!(parse_v2(0x20, 0x11, &v4).unwrap().client, None, "LOCAL");
        assert_eq!(parse_v2(0x21, 0x00, &[]).unwrap().client, None, "UNSPEC");
        // An ALPN TLV, then the TLS one with the client bit.
        let mut tlv = v4.to_vec();
        tlv.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        tlv.extend_from_slice(&[0x20, 0, 5, 0x01, 0, 0, 0, 0]);
        assert!(parse_v2(0x21, 0x11, &tlv).unwrap().tls);
        tlv.push(0x20);
        tlv.extend_from_slice(&[0, 9]);
        assert!(
            parse_v2(0x21, 0x11, &tlv).is_err(),
            "a TLV longer than the header"
        );
        assert!(parse_v2(0x21, 0x11, &v4[..8]).is_err());
        assert!(
            parse_v2(0x11, 0x11, &v4).is_err(),
            "version 1 in a v2 header"
        );
        assert!(parse_v2(0x23, 0x11, &v4).is_err());
        assert!(parse_v2(0x21, 0x41, &v4).is_err());
    }

    #[tokio::test]
    async fn reading_stops_at_the_end_of_the_header() {
        let mut input: &[u8] = b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 143\r\n\x16\x03\x01";
        let got = read_header(&mut input, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got.client, Some("1.2.3.4:1000".parse().unwrap()));
        assert_eq!(input, b"\x16\x03\x01", "the TLS hello is left to read");
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 9, 9, 9, 9, 8, 8, 8, 8, 0, 7, 0, 143]);
        v2.extend_from_slice(b"rest");
        let mut input: &[u8] = &v2;
        let got = read_header(&mut input, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got.client, Some("9.9.9.9:7".parse().unwrap()));
        assert_eq!(input, b"rest");
        let long = [b"PROXY ".to_vec(), vec![b'x'; 200]].concat();
        let mut input: &[u8] = &long;
        assert!(read_header(&mut input, Duration::from_secs(1))
            .await
            .is_err());
        let mut input: &[u8] = b"a1 LOGIN x y\r\n";
        assert!(read_header(&mut input, Duration::from_secs(1))
            .await
            .is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_v1(&data);
            if data.len() >= 2 {
                let _ = parse_v2(data[0], data[1], &data[2..]);
                let _ = parse_v2(0x21, data[0], &data[1..]);
            }
            let _ = Network::parse(&String::from_utf8_lossy(&data));
        }
    }

    #[test]
    fn networks() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x", "::/129", "1.2.3.4/"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }
}
