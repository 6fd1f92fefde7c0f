//! The system's DNS resolvers: the name servers `/etc/resolv.conf` lists.
//!
//! Read here, not by hickory-resolver's `system-config` feature: on macOS that feature asks
//! Apple's SystemConfiguration framework, which a cross build from Linux cannot link. macOS
//! keeps `/etc/resolv.conf` current for its primary resolvers; on Linux it is the file
//! hickory reads itself. Only the servers are taken: the lookups set their own options
//! ([`super::check`]) and ask absolute names, so `search` and `options` lines do not matter.

use std::net::IpAddr;
use std::path::Path;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The name servers of the resolv.conf at `path`, or a one-line error naming the file.
pub fn name_servers(path: &Path) -> anyhow::Result<Vec<IpAddr>> {
    let text = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the system's DNS resolvers from {}: {e} (name a server with --resolver)",
            path.display()
        )
    })?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The `nameserver` addresses of resolv.conf text, in order. A line the parser does not
/// know is skipped, as the C library's resolver does.
pub fn parse(text: &[u8]) -> Result<Vec<IpAddr>, String> {
    let (config, _unknown_lines) = resolv_conf::Config::parse_with_errors(text);
    let servers: Vec<IpAddr> = config.nameservers.iter().map(IpAddr::from).collect();
    if servers.is_empty() {
        return Err("lists no name server (name one with --resolver)".into());
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What macOS writes there (scutil's primary resolvers), with a scoped IPv6 server.
    const MACOS: &str = "\
#
# macOS Notice
#
# This file is not consulted for DNS hostname resolution, address
# resolution, or the DNS query routing mechanism used by most
# processes on this system.
#
search fritz.box
nameserver 192.168.178.1
nameserver fe80::1%en0
options ndots:2 edns0 no-such-option
";

    #[test]
    fn servers_come_in_order_and_other_lines_are_skipped() {
        assert_eq!(
            parse(MACOS.as_bytes()).unwrap(),
            ["192.168.178.1", "fe80::1"].map(|ip| ip.parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn a_file_without_servers_is_an_error() {
        let err = parse(b"# no network\nsearch example.org\n").unwrap_err();
        assert_eq!(err, "lists no name server (name one with --resolver)");
    }

    #[test]
    fn the_file_is_read_and_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("resolv-conf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 10.77.0.1\n").unwrap();
        assert_eq!(
            name_servers(&file).unwrap(),
            vec![IpAddr::from([10, 77, 0, 1])]
        );

        std::fs::write(&file, "").unwrap();
        let empty = name_servers(&file).unwrap_err().to_string();
        assert_eq!(
            empty,
            format!(
                "{}: lists no name server (name one with --resolver)",
                file.display()
            )
        );

        std::fs::remove_file(&file).unwrap();
        let missing = name_servers(&file).unwrap_err().to_string();
        assert!(
            missing.starts_with(&format!(
                "cannot read the system's DNS resolvers from {}: ",
                file.display()
            )) && !missing.contains('\n'),
            "{missing}"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
