//! The few DER values Puppet's extensions and attributes need: strings in, UTF8String out.

const UTF8_STRING: u8 = 0x0c;
const STRING_TAGS: [u8; 6] = [0x0c, 0x13, 0x14, 0x16, 0x1a, 0x1e];

/// Splits one DER TLV off the front of `input`: (tag, contents, rest).
pub fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Decodes a DER string value (UTF8String, PrintableString, T61, IA5, Visible or BMPString).
pub fn decode_string(input: &[u8]) -> Option<String> {
    let (tag, contents, rest) = read_tlv(input)?;
    if !rest.is_empty() || !STRING_TAGS.contains(&tag) {
        return None;
    }
    if tag == 0x1e {
        let units: Vec<u16> = contents
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units).ok();
    }
    String::from_utf8(contents.to_vec()).ok()
}

/// Decodes an attribute value `SET { string }` to its string.
pub fn decode_set_of_string(input: &[u8]) -> Option<String> {
    let (tag, contents, rest) = read_tlv(input)?;
    if tag != 0x31 || !rest.is_empty() {
        return None;
    }
    decode_string(contents)
}

/// DER-encodes a length.
pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encodes a TLV.
pub fn encode_tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    encode_len(contents.len(), &mut out);
    out.extend_from_slice(contents);
    out
}

/// Encodes `s` as a DER UTF8String.
pub fn utf8_string(s: &str) -> Vec<u8> {
    encode_tlv(UTF8_STRING, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_and_long_strings() {
        for len in [0usize, 5, 127, 128, 300, 70_000] {
            let s = "x".repeat(len);
            let der = utf8_string(&s);
            assert_eq!(decode_string(&der).as_deref(), Some(s.as_str()));
        }
    }

    #[test]
    fn rejects_truncated_and_non_strings() {
        assert_eq!(decode_string(&[0x0c, 0x05, b'a']), None);
        assert_eq!(decode_string(&[0x04, 0x01, b'a']), None);
        assert_eq!(decode_string(&[]), None);
        assert_eq!(decode_string(&[0x0c, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(
            decode_set_of_string(&[0x31, 0x03, 0x13, 0x01, b'y']).as_deref(),
            Some("y")
        );
    }
}
