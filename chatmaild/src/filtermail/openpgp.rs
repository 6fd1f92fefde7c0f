//! Is an ASCII-armored payload really an OpenPGP *encrypted* message?
//!
//! Only the packet framing is inspected (nothing is decrypted): the message must be a
//! run of public-key or symmetric-key encrypted session key packets followed by exactly
//! one Symmetrically Encrypted Integrity Protected Data packet that ends the data. That
//! shape cannot carry readable text, while a Literal Data, Compressed or Signed packet
//! would.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Direction;

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const END: &[u8] = b"-----END PGP MESSAGE-----";

pub const TAG_PKESK: u8 = 1;
pub const TAG_SKESK: u8 = 3;
pub const TAG_SEIPD: u8 = 18;

/// Why a payload was not accepted as encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotEncrypted {
    MissingBegin,
    MissingEnd,
    /// An armor header (`Version: ...`) in outgoing mail: our clients never write one.
    ArmorHeader,
    Base64,
    Empty,
    OldOrInvalidHeader {
        offset: usize,
    },
    Truncated {
        offset: usize,
    },
    /// A packet other than PKESK/SKESK before the last one.
    UnexpectedPacket {
        tag: u8,
        offset: usize,
    },
    /// The last packet is not SEIPD.
    LastNotSeipd {
        tag: u8,
    },
    /// Partial body lengths are only legal for data packets.
    PartialSessionKey {
        offset: usize,
    },
    UnknownVersion {
        tag: u8,
        version: u8,
    },
}

/// Check the decoded body of the `application/octet-stream` part.
pub fn check_armored(payload: &[u8], direction: Direction) -> Result<(), NotEncrypted> {
    let binary = dearmor(payload, direction)?;
    check_packets(&binary)
}

/// Strip the armor and decode the base64 body.
pub fn dearmor(payload: &[u8], direction: Direction) -> Result<Vec<u8>, NotEncrypted> {
    let rest = payload
        .strip_prefix(BEGIN)
        .and_then(strip_one_newline)
        .ok_or(NotEncrypted::MissingBegin)?;
    let rest = trim_end_newlines(rest)
        .strip_suffix(END)
        .ok_or(NotEncrypted::MissingEnd)?;

    let mut lines: Vec<&[u8]> = rest
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    // Armor headers ("Version: ...", "Comment: ...") end with a blank line. Incoming mail
    // from other implementations may carry them; our own clients never do.
    if lines.first().is_some_and(|l| is_armor_header(l)) {
        if direction == Direction::Outgoing {
            return Err(NotEncrypted::ArmorHeader);
        }
        while lines.first().is_some_and(|l| is_armor_header(l)) {
            lines.remove(0);
        }
    }
    // The optional CRC24 checksum line (`=XXXX`) is not base64 data; RFC 9580 tells
    // receivers to ignore it, so it is dropped rather than verified.
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.last().is_some_and(|l| l.len() == 5 && l[0] == b'=') {
        lines.pop();
    }
    let mut b64 = Vec::with_capacity(rest.len());
    for line in lines {
        b64.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
    }
    if b64.is_empty() {
        return Err(NotEncrypted::Empty);
    }
    STANDARD.decode(&b64).map_err(|_| NotEncrypted::Base64)
}

fn strip_one_newline(s: &[u8]) -> Option<&[u8]> {
    s.strip_prefix(b"\r\n").or_else(|| s.strip_prefix(b"\n"))
}

fn trim_end_newlines(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

fn is_armor_header(line: &[u8]) -> bool {
    let Some(colon) = line.windows(2).position(|w| w == b": ") else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// Walk the packet headers of a binary OpenPGP message.
pub fn check_packets(data: &[u8]) -> Result<(), NotEncrypted> {
    if data.is_empty() {
        return Err(NotEncrypted::Empty);
    }
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let (tag, body_start, end, partial) = packet_bounds(data, pos)?;
        let last = end == data.len();
        match tag {
            TAG_PKESK | TAG_SKESK if !last => {
                if partial {
                    return Err(NotEncrypted::PartialSessionKey { offset: start });
                }
                let version = *data
                    .get(body_start)
                    .ok_or(NotEncrypted::Truncated { offset: start })?;
                let known = if tag == TAG_PKESK {
                    matches!(version, 3 | 6)
                } else {
                    matches!(version, 4..=6)
                };
                if !known {
                    return Err(NotEncrypted::UnknownVersion { tag, version });
                }
            }
            TAG_SEIPD if last => {
                let version = *data
                    .get(body_start)
                    .ok_or(NotEncrypted::Truncated { offset: start })?;
                if !matches!(version, 1 | 2) {
                    return Err(NotEncrypted::UnknownVersion { tag, version });
                }
            }
            _ if last => return Err(NotEncrypted::LastNotSeipd { tag }),
            _ => return Err(NotEncrypted::UnexpectedPacket { tag, offset: start }),
        }
        pos = end;
    }
    Ok(())
}

/// Returns (tag, offset of the first body octet, offset after the packet, used partial lengths).
fn packet_bounds(data: &[u8], pos: usize) -> Result<(u8, usize, usize, bool), NotEncrypted> {
    let truncated = NotEncrypted::Truncated { offset: pos };
    let header = data[pos];
    if header & 0x80 == 0 {
        return Err(NotEncrypted::OldOrInvalidHeader { offset: pos });
    }
    if header & 0x40 == 0 {
        // Legacy packet format: tag in bits 5..2, length type in bits 1..0.
        let tag = (header >> 2) & 0x0f;
        let (len, hdr) = match header & 0x03 {
            0 => (usize::from(*data.get(pos + 1).ok_or(truncated.clone())?), 2),
            1 => (be_len(data, pos + 1, 2).ok_or(truncated.clone())?, 3),
            2 => (be_len(data, pos + 1, 4).ok_or(truncated.clone())?, 5),
            // Indeterminate length: the packet runs to the end of the data.
            _ => (data.len() - (pos + 1), 1),
        };
        let body = pos + hdr;
        let end = body
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or(truncated)?;
        return Ok((tag, body, end, false));
    }

    let tag = header & 0x3f;
    let body_start = pos + 1;
    let mut cur = body_start;
    let mut first_body = None;
    let mut partial = false;
    loop {
        let first = *data.get(cur).ok_or(truncated.clone())?;
        let (len, hdr, is_partial) = match first {
            0..=191 => (usize::from(first), 1, false),
            192..=223 => {
                let second = usize::from(*data.get(cur + 1).ok_or(truncated.clone())?);
                (((usize::from(first) - 192) << 8) + second + 192, 2, false)
            }
            224..=254 => (1usize << (first & 0x1f), 1, true),
            255 => (be_len(data, cur + 1, 4).ok_or(truncated.clone())?, 5, false),
        };
        let chunk = cur + hdr;
        first_body.get_or_insert(chunk);
        let end = chunk
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or(truncated.clone())?;
        if !is_partial {
            return Ok((tag, first_body.unwrap_or(chunk), end, partial));
        }
        partial = true;
        cur = end;
    }
}

fn be_len(data: &[u8], at: usize, n: usize) -> Option<usize> {
    let bytes = data.get(at..at + n)?;
    Some(
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format packet with a one-octet length.
    fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 192);
        let mut p = vec![0xc0 | tag, body.len() as u8];
        p.extend_from_slice(body);
        p
    }

    fn armor(binary: &[u8]) -> Vec<u8> {
        let b64 = STANDARD.encode(binary);
        let mut out = b"-----BEGIN PGP MESSAGE-----\r\n\r\n".to_vec();
        for chunk in b64.as_bytes().chunks(76) {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"=njUN\r\n-----END PGP MESSAGE-----\r\n\r\n");
        out
    }

    fn pkesk() -> Vec<u8> {
        packet(TAG_PKESK, &[3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0xaa, 0xbb])
    }

    fn seipd() -> Vec<u8> {
        packet(TAG_SEIPD, &[1, 9, 9, 9, 9, 9, 9, 9])
    }

    #[test]
    fn pkesk_then_seipd() {
        let msg = [pkesk(), pkesk(), seipd()].concat();
        assert_eq!(check_packets(&msg), Ok(()));
        assert_eq!(check_armored(&armor(&msg), Direction::Outgoing), Ok(()));
        let sym = [packet(TAG_SKESK, &[4, 9, 3, 2]), seipd()].concat();
        assert_eq!(check_packets(&sym), Ok(()));
    }

    #[test]
    fn literal_or_compressed_payload() {
        let literal = packet(11, b"b\0\0\0\0\0hello");
        assert_eq!(
            check_packets(&literal),
            Err(NotEncrypted::LastNotSeipd { tag: 11 })
        );
        let msg = [pkesk(), packet(8, &[1, 2, 3])].concat();
        assert_eq!(
            check_packets(&msg),
            Err(NotEncrypted::LastNotSeipd { tag: 8 })
        );
    }

    #[test]
    fn wrong_order() {
        let msg = [seipd(), pkesk()].concat();
        assert!(matches!(
            check_packets(&msg),
            Err(NotEncrypted::UnexpectedPacket { tag: 18, .. })
        ));
        let msg = [pkesk(), packet(11, b"b\0\0\0\0\0x"), seipd()].concat();
        assert!(matches!(
            check_packets(&msg),
            Err(NotEncrypted::UnexpectedPacket { tag: 11, .. })
        ));
        let msg = [pkesk(), seipd(), seipd()].concat();
        assert!(matches!(
            check_packets(&msg),
            Err(NotEncrypted::UnexpectedPacket { tag: 18, .. })
        ));
    }

    #[test]
    fn esk_alone_is_not_enough() {
        assert_eq!(
            check_packets(&pkesk()),
            Err(NotEncrypted::LastNotSeipd { tag: 1 })
        );
    }

    #[test]
    fn truncated() {
        let msg = [pkesk(), seipd()].concat();
        for cut in 1..msg.len() {
            assert!(check_packets(&msg[..cut]).is_err(), "cut at {cut}");
        }
        // Length octets cut off.
        assert!(matches!(
            check_packets(&[0xc0 | 18]),
            Err(NotEncrypted::Truncated { .. })
        ));
        assert!(matches!(
            check_packets(&[0xc0 | 18, 200]),
            Err(NotEncrypted::Truncated { .. })
        ));
        assert!(matches!(
            check_packets(&[0xc0 | 18, 255, 0, 0]),
            Err(NotEncrypted::Truncated { .. })
        ));
    }

    #[test]
    fn length_encodings() {
        // Two-octet length: 192..8383.
        let body = vec![1u8; 300];
        let len = body.len() - 192;
        let (a, b) = (len / 256 + 192, len % 256);
        let mut two = vec![0xc0 | 18, a as u8, b as u8];
        two.extend_from_slice(&body);
        assert_eq!(check_packets(&[pkesk(), two].concat()), Ok(()));

        // Five-octet length.
        let mut five = vec![0xc0 | 18, 255, 0, 0, 1, 44];
        five.extend_from_slice(&body);
        assert_eq!(check_packets(&[pkesk(), five].concat()), Ok(()));

        // Partial lengths: 512-byte chunk, then a final 10-byte one.
        let mut partial = vec![0xc0 | 18, 224 | 9];
        partial.extend(std::iter::repeat_n(1u8, 512));
        partial.push(10);
        partial.extend(std::iter::repeat_n(1u8, 10));
        assert_eq!(check_packets(&[pkesk(), partial.clone()].concat()), Ok(()));
        // ...where the final chunk is missing.
        assert!(check_packets(&[pkesk(), partial[..514].to_vec()].concat()).is_err());
    }

    #[test]
    fn partial_lengths_on_session_keys_are_malformed() {
        let mut esk = vec![0xc0 | 1, 224];
        esk.push(3);
        esk.push(0);
        esk.extend_from_slice(&[3, 1, 2]);
        let msg = [esk, seipd()].concat();
        assert!(matches!(
            check_packets(&msg),
            Err(NotEncrypted::PartialSessionKey { .. })
        ));
    }

    #[test]
    fn legacy_format_headers() {
        // Legacy headers can only express tags 0..=15, so SEIPD (18) is always new-format;
        // the session key packets before it may be legacy (GnuPG writes them that way).
        let seipd_new = [0xc0 | 18, 3, 1, 7, 7];
        let one_octet = [0x80 | (1 << 2), 4, 3, 0, 0, 0];
        let two_octet = [0x80 | (1 << 2) | 1, 0, 4, 3, 0, 0, 0];
        let four_octet = [0x80 | (3 << 2) | 2, 0, 0, 0, 2, 4, 9];
        for esk in [&one_octet[..], &two_octet[..], &four_octet[..]] {
            assert_eq!(
                check_packets(&[esk, &seipd_new[..]].concat()),
                Ok(()),
                "{esk:?}"
            );
        }
        // Indeterminate length swallows everything after it, so it ends the message as a
        // non-SEIPD packet.
        let indeterminate = [0x80 | (8 << 2) | 3, 1, 7, 7];
        assert_eq!(
            check_packets(&indeterminate),
            Err(NotEncrypted::LastNotSeipd { tag: 8 })
        );
    }

    #[test]
    fn invalid_header_bit() {
        assert_eq!(
            check_packets(b"hello"),
            Err(NotEncrypted::OldOrInvalidHeader { offset: 0 })
        );
        assert_eq!(check_packets(b""), Err(NotEncrypted::Empty));
    }

    #[test]
    fn unknown_versions() {
        let bad_esk = packet(TAG_PKESK, &[9, 1, 2]);
        assert_eq!(
            check_packets(&[bad_esk, seipd()].concat()),
            Err(NotEncrypted::UnknownVersion { tag: 1, version: 9 })
        );
        let bad_seipd = packet(TAG_SEIPD, &[7, 1]);
        assert_eq!(
            check_packets(&[pkesk(), bad_seipd].concat()),
            Err(NotEncrypted::UnknownVersion {
                tag: 18,
                version: 7
            })
        );
    }

    #[test]
    fn armor_rules() {
        let good = armor(&[pkesk(), seipd()].concat());
        let text = String::from_utf8(good.clone()).unwrap();

        let missing_begin = text.replace("-----BEGIN PGP MESSAGE-----\r\n", "");
        assert_eq!(
            check_armored(missing_begin.as_bytes(), Direction::Incoming),
            Err(NotEncrypted::MissingBegin)
        );
        let missing_end = text.replace("-----END PGP MESSAGE-----", "");
        assert_eq!(
            check_armored(missing_end.as_bytes(), Direction::Incoming),
            Err(NotEncrypted::MissingEnd)
        );

        let with_version = text.replace(
            "-----BEGIN PGP MESSAGE-----\r\n",
            "-----BEGIN PGP MESSAGE-----\r\nVersion: Other 1.0\r\n",
        );
        assert_eq!(
            check_armored(with_version.as_bytes(), Direction::Outgoing),
            Err(NotEncrypted::ArmorHeader)
        );
        assert_eq!(
            check_armored(with_version.as_bytes(), Direction::Incoming),
            Ok(())
        );

        let corrupted = text.replacen("=njUN", "!!=njUN", 1);
        assert_eq!(
            check_armored(corrupted.as_bytes(), Direction::Incoming),
            Err(NotEncrypted::Base64)
        );

        let cleartext = "-----BEGIN PGP MESSAGE-----\r\n\r\nHello, this is plain text\r\n-----END PGP MESSAGE-----\r\n";
        assert!(check_armored(cleartext.as_bytes(), Direction::Incoming).is_err());

        let not_pgp = armor(b"just some bytes that are not packets");
        assert!(check_armored(&not_pgp, Direction::Incoming).is_err());

        let no_crc = text.replace("=njUN\r\n", "");
        assert_eq!(
            check_armored(no_crc.as_bytes(), Direction::Outgoing),
            Ok(())
        );

        let lf_only = text.replace("\r\n", "\n");
        assert_eq!(
            check_armored(lf_only.as_bytes(), Direction::Outgoing),
            Ok(())
        );
    }
}
