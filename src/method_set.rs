//! [`MethodSet`]: the HTTP methods a layer acts on, told per request without
//! a search.

use std::fmt;

use http::Method;

/// The methods of HTTP's own registry that get a bit of their own, in order.
static STANDARD: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// A set of HTTP methods. The standard ones are bits, so asking about one
/// is a mask; an extension method (`PROPFIND`, `QUERY`) is looked for in a
/// list, which stays empty unless such a method was given.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct MethodSet {
    standard: u16,
    extensions: Vec<Method>,
}

impl MethodSet {
    pub(crate) fn contains(&self, method: &Method) -> bool {
        match standard_bit(method) {
            Some(bit) => self.standard & bit != 0,
            None => self.extensions.contains(method),
        }
    }

    /// Every method in the set: the standard ones in registry order, then
    /// the extensions as given.
    fn iter(&self) -> impl Iterator<Item = &Method> {
        STANDARD
            .iter()
            .enumerate()
            .filter(|(index, _)| self.standard & (1 << index) != 0)
            .map(|(_, method)| method)
            .chain(&self.extensions)
    }
}

/// The bit of a standard method; `None` for an extension method.
fn standard_bit(method: &Method) -> Option<u16> {
    let index = match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => return None,
    };
    Some(1 << index)
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(methods: I) -> Self {
        let mut set = Self::default();
        for method in methods {
            match standard_bit(&method) {
                Some(bit) => set.standard |= bit,
                None if !set.extensions.contains(&method) => set.extensions.push(method),
                None => {}
            }
        }
        set
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_method_has_its_own_bit() {
        for (index, method) in STANDARD.iter().enumerate() {
            assert_eq!(standard_bit(method), Some(1 << index), "{method}");
            let alone: MethodSet = [method.clone()].into_iter().collect();
            for other in &STANDARD {
                assert_eq!(alone.contains(other), other == method, "{method} / {other}");
            }
        }
    }

    #[test]
    fn an_extension_method_is_in_the_set_only_if_given() {
        let query = Method::from_bytes(b"QUERY").unwrap();
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        let set: MethodSet = [Method::POST, query.clone(), query.clone()]
            .into_iter()
            .collect();
        assert!(set.contains(&Method::POST));
        assert!(set.contains(&query));
        assert!(!set.contains(&propfind));
        assert!(!set.contains(&Method::GET));
        assert_eq!(format!("{set:?}"), "{POST, QUERY}");
    }

    #[test]
    fn the_empty_set_holds_nothing() {
        let set = MethodSet::default();
        assert!(STANDARD.iter().all(|method| !set.contains(method)));
        assert!(!set.contains(&Method::from_bytes(b"QUERY").unwrap()));
    }
}
