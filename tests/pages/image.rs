//! Reading the browser's screenshots: size, whether anything was drawn, the QR codes on them.

use std::path::Path;

pub struct Screenshot {
    pub width: usize,
    pub height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Screenshot {
    pub fn load(path: &Path) -> Screenshot {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot {}: {e}", path.display()));
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap_or_else(|e| panic!("{} is no PNG: {e}", path.display()));
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("{}: unexpected colour type {other:?}", path.display()),
        };
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|px| [px[0], px[1], px[2]])
            .collect();
        Screenshot {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// How many different colours the page shows: text, links, button and images make
    /// dozens once anti-aliased, a blank or error page one or two.
    pub fn distinct_colours(&self) -> usize {
        // one bit per 24-bit colour: far cheaper than hashing millions of pixels
        let mut seen = vec![0u64; (1 << 24) / 64];
        let mut count = 0;
        for [r, g, b] in &self.rgb {
            let i = (*r as usize) << 16 | (*g as usize) << 8 | *b as usize;
            let bit = 1u64 << (i % 64);
            if seen[i / 64] & bit == 0 {
                seen[i / 64] |= bit;
                count += 1;
            }
        }
        count
    }

    /// Share of pixels that differ from the top-left one (the page background).
    pub fn ink(&self) -> f64 {
        let background = self.rgb[0];
        let drawn = self.rgb.iter().filter(|px| **px != background).count();
        drawn as f64 / self.rgb.len() as f64
    }

    /// The texts of the QR codes visible in the screenshot.
    pub fn qr_codes(&self) -> Vec<String> {
        let grey: Vec<u8> = self
            .rgb
            .iter()
            .map(|[r, g, b]| ((*r as u16 + *g as u16 + *b as u16) / 3) as u8)
            .collect();
        let w = self.width;
        let mut image =
            rqrr::PreparedImage::prepare_from_greyscale(w, self.height, |x, y| grey[y * w + x]);
        image
            .detect_grids()
            .into_iter()
            .map(|grid| match grid.decode() {
                Ok((_, text)) => text,
                Err(e) => format!("<undecodable QR code: {e}>"),
            })
            .collect()
    }
}
