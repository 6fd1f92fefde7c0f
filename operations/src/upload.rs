//! How a file's content travels to the host: large contents gzip-compressed (the relay
//! binaries shrink to about a third), unpacked by the host's `gzip -dc` (gzip is essential
//! on Debian, so on every host) into the same temp file the plain upload writes.

use std::io::Write;

/// Contents up to this size go as they are: compressing a config file saves nothing worth
/// a gzip process on the host.
pub const COMPRESS_ABOVE: usize = 64 * 1024;

/// What goes through the command's stdin, and how the host turns it back into the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub stdin: Vec<u8>,
    pub compressed: bool,
}

/// The upload of `content`: gzip-compressed when it is large and compression pays (an
/// already compressed archive is sent as it is).
pub fn prepare(content: &[u8]) -> Upload {
    prepare_gzipped(content, None)
}

/// The upload of `content` whose gzip stream the caller may already hold (`stored`, e.g. a
/// relay binary this program carries): that stream goes as it is, so the content is not
/// compressed a second time. The same rule decides whether compression pays. The stream is
/// trusted no further than a fresh one: the host unpacks it and checks size and sha256.
pub fn prepare_gzipped(content: &[u8], stored: Option<&[u8]>) -> Upload {
    if content.len() > COMPRESS_ABOVE {
        let packed = match stored {
            Some(stream) => stream.to_vec(),
            None => gzip(content),
        };
        if pays(content, &packed) {
            return Upload {
                stdin: packed,
                compressed: true,
            };
        }
    }
    Upload {
        stdin: content.to_vec(),
        compressed: false,
    }
}

/// Compression pays when it saves at least a tenth.
fn pays(content: &[u8], packed: &[u8]) -> bool {
    packed.len() < content.len() / 10 * 9
}

/// gzip's own level (6): level 9 makes the relay binaries 1 % smaller at twice the time.
fn gzip(content: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(content.len() / 3),
        flate2::Compression::default(),
    );
    encoder
        .write_all(content)
        .and_then(|()| encoder.finish())
        .expect("compressing into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_contents_go_as_they_are() {
        let up = prepare(b"hello\n");
        assert!(!up.compressed);
        assert_eq!(up.stdin, b"hello\n");
    }

    #[test]
    fn large_contents_are_gzip_that_gunzip_reads() {
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let up = prepare(&content);
        assert!(up.compressed);
        assert!(up.stdin.len() < content.len() / 10, "{}", up.stdin.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&up.stdin[..]), &mut back)
            .unwrap();
        assert_eq!(back, content);
    }

    #[test]
    fn a_stored_gzip_stream_goes_as_it_is() {
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 7).to_le_bytes())
            .collect();
        // level 1, so that it differs from the stream `prepare` would make
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&content).unwrap();
        let stored = encoder.finish().unwrap();
        assert_ne!(stored, prepare(&content).stdin);

        let up = prepare_gzipped(&content, Some(&stored));
        assert!(up.compressed);
        assert_eq!(up.stdin, stored);
    }

    #[test]
    fn a_stored_stream_that_saves_too_little_is_not_sent() {
        let content = vec![0u8; 100_000];
        let stored = vec![1u8; 95_000];
        let up = prepare_gzipped(&content, Some(&stored));
        assert!(!up.compressed);
        assert_eq!(up.stdin, content);
    }

    #[test]
    fn incompressible_contents_go_as_they_are() {
        // an xorshift stream: no gzip makes it smaller
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let content: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let up = prepare(&content);
        assert!(!up.compressed);
        assert_eq!(up.stdin.len(), content.len());
    }
}
