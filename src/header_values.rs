//! [`header_values`]: the values of one header, found the cheaper way for
//! the map at hand.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Up to this many distinct names, a header is looked for by comparing each
/// name with it, which costs less than the map's own lookup: that hashes the
/// name first, byte by byte for a name outside the standard set (an
/// `Idempotency-Key`'s hash alone was about 110 instructions).
const NAMES_COMPARED: usize = 16;

/// The values of `name` in `headers`, in order.
#[inline]
pub(crate) fn header_values<'a>(headers: &'a HeaderMap, name: &'a HeaderName) -> HeaderValues<'a> {
    if headers.keys_len() <= NAMES_COMPARED {
        // The names alone first: most lookups here are for a header the
        // request does not have (no key), and walking the names is cheaper
        // than walking every value.
        if !headers.keys().any(|present| present == name) {
            return HeaderValues::Absent;
        }
        HeaderValues::Compared {
            all: headers.iter(),
            name,
        }
    } else {
        HeaderValues::LookedUp(headers.get_all(name).iter())
    }
}

/// What [`header_values`] answers: an iterator over one header's values.
pub(crate) enum HeaderValues<'a> {
    /// None: the name is not in the map.
    Absent,
    /// Every value of the map, those under `name` kept.
    Compared {
        all: header::Iter<'a, HeaderValue>,
        name: &'a HeaderName,
    },
    /// The values the map's lookup found.
    LookedUp(header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for HeaderValues<'a> {
    type Item = &'a HeaderValue;

    #[inline]
    fn next(&mut self) -> Option<&'a HeaderValue> {
        match self {
            Self::Absent => None,
            Self::Compared { all, name } => all
                .find(|(present, _)| present == name)
                .map(|(_, value)| value),
            Self::LookedUp(values) => values.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below and above the number of names compared one by one, with the
    /// header first, last or absent, once or twice, among standard and
    /// custom names (one of them of the same length).
    #[test]
    fn the_same_values_whichever_way_they_are_found() {
        let name = HeaderName::from_static("idempotency-key");
        for others in [0, 1, NAMES_COMPARED - 1, NAMES_COMPARED, NAMES_COMPARED + 5] {
            for (before, after) in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2)] {
                let mut headers = HeaderMap::new();
                for i in 0..before {
                    headers.append(&name, HeaderValue::from(i));
                }
                for i in 0..others {
                    let other = match i {
                        0 => header::CONTENT_TYPE,
                        1 => HeaderName::from_static("idempotency-kez"),
                        _ => HeaderName::try_from(format!("x-other-{i}")).unwrap(),
                    };
                    headers.append(other, HeaderValue::from_static("v"));
                }
                for i in 0..after {
                    headers.append(&name, HeaderValue::from(before + i));
                }
                let expected: Vec<_> = headers.get_all(&name).iter().collect();
                let found: Vec<_> = header_values(&headers, &name).collect();
                assert_eq!(found, expected, "{others} others, {before} + {after}");
                assert_eq!(found.len(), before + after);
                let way = match header_values(&headers, &name) {
                    HeaderValues::Absent => "absent",
                    HeaderValues::Compared { .. } => "compared",
                    HeaderValues::LookedUp(_) => "looked up",
                };
                let expected_way = match (headers.keys_len() <= NAMES_COMPARED, found.len()) {
                    (true, 0) => "absent",
                    (true, _) => "compared",
                    (false, _) => "looked up",
                };
                assert_eq!(way, expected_way, "{others} others, {before} + {after}");
            }
        }
    }
}
