//! Reassembling a byte stream into whole units (frames, packets, events) as reads arrive: the
//! one rule every decoder of a connection's bytes follows.

/// Feeds `data`, read from a connection, to `parse` together with `partial`, the bytes of an
/// incomplete unit left from earlier reads. `parse` consumes every whole unit at the start of
/// what it is given and returns how many bytes it used; the rest is kept in `partial` for the
/// next read. Between units `partial` is empty and holds no allocation (a fresh read is parsed
/// in place, and a buffer fully used is dropped), so an idle connection costs no buffer.
pub fn feed<E>(
    partial: &mut Vec<u8>,
    data: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<usize, E>,
) -> Result<(), E> {
    if partial.is_empty() {
        let used = parse(data)?;
        if used < data.len() {
            partial.extend_from_slice(&data[used..]);
        }
    } else {
        let mut buf = std::mem::take(partial);
        buf.extend_from_slice(data);
        let used = parse(&buf)?;
        if used < buf.len() {
            buf.drain(..used);
            *partial = buf;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units are lines ending in `\n`; returns the bytes of the whole lines.
    fn lines(out: &mut Vec<String>) -> impl FnOnce(&[u8]) -> Result<usize, ()> + '_ {
        move |b| {
            let used = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
            out.extend(
                b[..used]
                    .split(|&c| c == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| String::from_utf8_lossy(l).into_owned()),
            );
            Ok(used)
        }
    }

    #[test]
    fn units_split_across_reads_are_joined_and_an_idle_stream_holds_no_buffer() {
        let (mut partial, mut out) = (Vec::new(), Vec::new());
        for read in [&b"one\ntw"[..], b"o", b"\nthree\n", b"four\nfi", b"ve\n"] {
            feed(&mut partial, read, lines(&mut out)).unwrap();
        }
        assert_eq!(out, ["one", "two", "three", "four", "five"]);
        assert!(partial.is_empty());
        assert_eq!(partial.capacity(), 0);
    }

    #[test]
    fn a_parse_error_is_returned() {
        let mut partial = b"ab".to_vec();
        assert_eq!(
            feed(&mut partial, b"c", |_| Err::<usize, _>("bad")),
            Err("bad")
        );
    }
}
