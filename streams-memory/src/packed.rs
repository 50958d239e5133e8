//! How entries are kept: each entry's fields packed into one exact-size
//! slice of a shared chunk, as Redis packs entries into listpacks.
//!
//! A stream writes its entries one after another into chunks of
//! [`CHUNK`] bytes; an entry is a [`Bytes`] view of its part of a chunk,
//! which holds the field count, each name's and value's length (LEB128),
//! then the names and values. Storing an entry allocates nothing but, once
//! per chunk, the chunk; reading one hands out slices of it (reference
//! counts, no copies), so a read allocates only the field list it returns.
//! A chunk is freed once every entry in it is gone (trimmed, deleted, and
//! dropped by the readers that hold it).

use bytes::{BufMut, Bytes, BytesMut};
use streams_core::{Fields, field};

/// Bytes per chunk: about 35 entries of 200 bytes. Small enough that an
/// entry outliving its neighbours keeps little alive, large enough that
/// the chunk allocation is rare.
pub(crate) const CHUNK: usize = 8 * 1024;

/// Entries this large get a buffer of their own.
const OWN_BUFFER: usize = CHUNK / 2;

/// One entry's fields, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed(Bytes);

/// Where entries are packed: the free end of the current chunk.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    chunk: BytesMut,
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(buf: &mut BytesMut, mut n: usize) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// Reads a varint at `*at`; `None` past the end (never for what
/// [`Arena::pack`] wrote).
fn get_varint(buf: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = *buf.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(n);
        }
        shift += 7;
    }
}

impl Arena {
    /// Packs `fields` into the chunk (a new one if it is full).
    pub(crate) fn pack(&mut self, fields: &[(Bytes, Bytes)]) -> Packed {
        let mut need = varint_len(fields.len());
        for (k, v) in fields {
            need += varint_len(k.len()) + varint_len(v.len()) + k.len() + v.len();
        }
        let mut own;
        let buf = if need > OWN_BUFFER {
            own = BytesMut::with_capacity(need);
            &mut own
        } else {
            if self.chunk.capacity() - self.chunk.len() < need {
                self.chunk = BytesMut::with_capacity(CHUNK);
            }
            &mut self.chunk
        };
        put_varint(buf, fields.len());
        for (k, v) in fields {
            put_varint(buf, k.len());
            put_varint(buf, v.len());
        }
        for (k, v) in fields {
            buf.put_slice(k);
            buf.put_slice(v);
        }
        // `split` shares the chunk: the entry's view, and the free rest.
        Packed(buf.split().freeze())
    }
}

/// The envelope's field names as static bytes: handing them out costs no
/// reference count (most entries are envelopes).
fn known_name(name: &[u8]) -> Option<Bytes> {
    let known = match name {
        b"data" => field::DATA,
        b"ts" => field::TS,
        b"mid" => field::MID,
        b"retry_count" => field::RETRY_COUNT,
        b"error" => field::ERROR,
        b"traceparent" => field::TRACEPARENT,
        b"replayed_from" => field::REPLAYED_FROM,
        b"replay_count" => field::REPLAY_COUNT,
        b"origin_stream" => field::ORIGIN_STREAM,
        b"origin_id" => field::ORIGIN_ID,
        b"group" => field::GROUP,
        b"consumer" => field::CONSUMER,
        b"reason" => field::REASON,
        b"failed_at" => field::FAILED_AT,
        b"deliveries" => field::DELIVERIES,
        _ => return None,
    };
    Some(Bytes::from_static(known.as_bytes()))
}

impl Packed {
    /// The fields, as slices of the packed buffer.
    pub(crate) fn fields(&self) -> Fields {
        let buf = &self.0;
        let mut at = 0;
        let n = get_varint(buf, &mut at).unwrap_or(0);
        let mut lens_at = at;
        // Data starts after the 2n lengths.
        for _ in 0..2 * n {
            if get_varint(buf, &mut at).is_none() {
                return Fields::new();
            }
        }
        let mut data_at = at;
        let mut fields = Fields::with_capacity(n);
        for _ in 0..n {
            let (Some(kl), Some(vl)) =
                (get_varint(buf, &mut lens_at), get_varint(buf, &mut lens_at))
            else {
                break;
            };
            let (k_end, v_end) = (data_at + kl, data_at + kl + vl);
            if v_end > buf.len() {
                break;
            }
            let name =
                known_name(&buf[data_at..k_end]).unwrap_or_else(|| buf.slice(data_at..k_end));
            fields.push((name, buf.slice(k_end..v_end)));
            data_at = v_end;
        }
        fields
    }

    /// Bytes kept for the entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
            .collect()
    }

    #[test]
    fn round_trips_in_shared_chunks() {
        let mut arena = Arena::default();
        let a = f(&[("data", "{\"x\":1}"), ("ts", "2026"), ("", "")]);
        let b = f(&[("k", &"v".repeat(300))]);
        let pa = arena.pack(&a);
        let pb = arena.pack(&b);
        assert_eq!(pa.fields(), a);
        assert_eq!(pb.fields(), b);
        assert_eq!(pa.len(), 1 + 6 + 4 + 7 + 2 + 4);
        assert_eq!(pb.len(), 1 + 1 + 2 + 1 + 300);
        assert_eq!(arena.pack(&[]).fields(), Fields::new());
    }

    #[test]
    fn envelope_names_are_static() {
        let mut arena = Arena::default();
        let fields = f(&[("data", "{}"), ("ts", "x"), ("other", "y")]);
        let out = arena.pack(&fields).fields();
        assert_eq!(out, fields);
        assert_eq!(known_name(b"data").as_deref(), Some(&b"data"[..]));
        assert_eq!(known_name(b"other"), None);
    }

    #[test]
    fn large_entries_and_full_chunks() {
        let mut arena = Arena::default();
        let big = f(&[("k", &"x".repeat(CHUNK * 3))]);
        let packed: Vec<_> = (0..200)
            .map(|i| arena.pack(&f(&[("n", &i.to_string()), ("pad", &"p".repeat(100))])))
            .collect();
        let pbig = arena.pack(&big);
        assert_eq!(pbig.fields(), big);
        for (i, p) in packed.iter().enumerate() {
            assert_eq!(p.fields()[0].1, i.to_string());
        }
        // Values longer than 127 bytes take two-byte lengths.
        let mut at = 0;
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 300);
        assert_eq!(get_varint(&buf, &mut at), Some(300));
        assert_eq!(at, 2);
    }
}
