//! The invite QR code PNG for relays with a CA-signed certificate (acme/external modes):
//! `DCACCOUNT:https://<mail_domain>/new`, which chat apps turn into a new account.

use anyhow::{Context, Result};
use qrcode::{Color, EcLevel, QrCode};

/// Side of the whole image, and of the scaled code pasted into it with a white margin.
const CANVAS: usize = 384;
const CODE_SIDE: usize = 372;
const CODE_OFFSET: usize = (CANVAS - CODE_SIDE) / 2;
/// The centre mark; error-correction level H restores the modules it covers.
const MARK_SIDE: usize = 64;

/// The file name the home page links to.
pub fn file_name(mail_domain: &str) -> String {
    format!("qr-chatmail-invite-{mail_domain}.png")
}

/// The text encoded in the QR code (upper-case scheme, as the apps expect when scanning).
pub fn invite_url(mail_domain: &str) -> String {
    format!("DCACCOUNT:https://{mail_domain}/new")
}

/// Renders the invite QR code of `mail_domain` as an RGBA PNG.
pub fn invite_png(mail_domain: &str) -> Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(invite_url(mail_domain), EcLevel::H)
        .context("QR code for the invite link")?;
    let mut canvas = Canvas::white(CANVAS);
    paste_code(&mut canvas, &code);
    draw_mark(&mut canvas);
    canvas.to_png()
}

/// Scales the code with a one-module border to `CODE_SIDE` (nearest neighbour).
fn paste_code(canvas: &mut Canvas, code: &QrCode) {
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2;
    for y in 0..CODE_SIDE {
        for x in 0..CODE_SIDE {
            let (mx, my) = (x * side / CODE_SIDE, y * side / CODE_SIDE);
            let inside = (1..=width).contains(&mx) && (1..=width).contains(&my);
            if inside && colors[(my - 1) * width + (mx - 1)] == Color::Dark {
                canvas.set_black(x + CODE_OFFSET, y + CODE_OFFSET);
            }
        }
    }
}

/// Our own centre mark, a black ring on a white tile. No dot in the ring: ring and dot
/// would come close to the 1:1:3:1:1 profile of a finder pattern and confuse scanners.
fn draw_mark(canvas: &mut Canvas) {
    let origin = (CANVAS - MARK_SIDE) / 2;
    let centre = MARK_SIDE as f64 / 2.0 - 0.5;
    for y in 0..MARK_SIDE {
        for x in 0..MARK_SIDE {
            let d = ((x as f64 - centre).powi(2) + (y as f64 - centre).powi(2)).sqrt();
            let black = (18.0..27.0).contains(&d);
            let (px, py) = (origin + x, origin + y);
            if black {
                canvas.set_black(px, py);
            } else {
                canvas.set_white(px, py);
            }
        }
    }
}

/// A square RGBA image.
struct Canvas {
    side: usize,
    rgba: Vec<u8>,
}

impl Canvas {
    fn white(side: usize) -> Self {
        Canvas {
            side,
            rgba: vec![0xff; side * side * 4],
        }
    }

    fn set(&mut self, x: usize, y: usize, value: u8) {
        let i = (y * self.side + x) * 4;
        self.rgba[i..i + 3].fill(value);
        self.rgba[i + 3] = 0xff;
    }

    fn set_black(&mut self, x: usize, y: usize) {
        self.set(x, y, 0);
    }

    fn set_white(&mut self, x: usize, y: usize) {
        self.set(x, y, 0xff);
    }

    fn to_png(&self) -> Result<Vec<u8>> {
        let side = u32::try_from(self.side)?;
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("PNG header")?;
        writer.write_image_data(&self.rgba).context("PNG data")?;
        writer.finish().context("PNG end")?;
        Ok(out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Decodes the PNG back to its size and grey values.
    fn decode_grey(png_bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgba);
        let grey = buf[..info.buffer_size()]
            .chunks(4)
            .map(|px| ((px[0] as u16 + px[1] as u16 + px[2] as u16) / 3) as u8)
            .collect();
        (info.width as usize, info.height as usize, grey)
    }

    /// The text of the one QR code in the PNG.
    pub(in crate::www) fn scan(png_bytes: &[u8]) -> String {
        let (w, h, grey) = decode_grey(png_bytes);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one QR code");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn png_is_384_square_and_scans_to_the_invite_link() {
        for domain in [
            "chat.example.org",
            "a-rather-long-subdomain.of.some.example.net",
        ] {
            let png_bytes = invite_png(domain).unwrap();
            assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
            let (w, h, _) = decode_grey(&png_bytes);
            assert_eq!((w, h), (CANVAS, CANVAS));
            assert_eq!(scan(&png_bytes), format!("DCACCOUNT:https://{domain}/new"));
        }
    }

    #[test]
    fn margin_is_white() {
        let (_, _, grey) = decode_grey(&invite_png("chat.example.org").unwrap());
        let margin = (0..CANVAS).flat_map(|i| [grey[i], grey[i * CANVAS]]);
        assert!(margin.into_iter().all(|v| v == 0xff));
    }

    #[test]
    fn file_name_carries_the_domain() {
        assert_eq!(
            file_name("chat.example.org"),
            "qr-chatmail-invite-chat.example.org.png"
        );
    }
}
