//! One kind of fact (packages, paths, units, ...) keyed by the name asked for, which knows
//! what was asked: reading a name the query did not ask for is a bug in the query (the
//! answer would silently read as "absent"), and panics in debug builds and tests.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Answers<V> {
    kind: &'static str,
    entries: BTreeMap<String, V>,
    /// The names asked for; `None` for facts made by hand (tests), which check nothing.
    asked: Option<BTreeSet<String>>,
}

impl<V> Default for Answers<V> {
    fn default() -> Self {
        Answers {
            kind: "fact",
            entries: BTreeMap::new(),
            asked: None,
        }
    }
}

impl<V> Answers<V> {
    /// The answers to a query that asked for `asked` (of `kind`, for the panic message).
    pub fn asked(kind: &'static str, asked: impl IntoIterator<Item = String>) -> Self {
        Answers {
            kind,
            entries: BTreeMap::new(),
            asked: Some(asked.into_iter().collect()),
        }
    }

    fn check<Q>(&self, name: &Q)
    where
        String: Borrow<Q>,
        Q: Ord + Debug + ?Sized,
    {
        if cfg!(debug_assertions)
            && let Some(asked) = &self.asked
        {
            assert!(
                asked.contains(name),
                "the facts query did not ask for {} {name:?}, which the plan reads (add it to the state's query)",
                self.kind
            );
        }
    }

    pub fn get<Q>(&self, name: &Q) -> Option<&V>
    where
        String: Borrow<Q>,
        Q: Ord + Debug + ?Sized,
    {
        self.check(name);
        self.entries.get(name)
    }

    pub fn get_key_value<Q>(&self, name: &Q) -> Option<(&String, &V)>
    where
        String: Borrow<Q>,
        Q: Ord + Debug + ?Sized,
    {
        self.check(name);
        self.entries.get_key_value(name)
    }

    pub fn contains_key<Q>(&self, name: &Q) -> bool
    where
        String: Borrow<Q>,
        Q: Ord + Debug + ?Sized,
    {
        self.check(name);
        self.entries.contains_key(name)
    }

    pub fn get_mut<Q>(&mut self, name: &Q) -> Option<&mut V>
    where
        String: Borrow<Q>,
        Q: Ord + Debug + ?Sized,
    {
        self.check(name);
        self.entries.get_mut(name)
    }

    /// An answer (a hand-made one counts as asked for).
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        if let Some(asked) = &mut self.asked {
            asked.insert(name.clone());
        }
        self.entries.insert(name, value)
    }

    pub fn entry(&mut self, name: String) -> std::collections::btree_map::Entry<'_, String, V> {
        if let Some(asked) = &mut self.asked {
            asked.insert(name.clone());
        }
        self.entries.entry(name)
    }

    /// The answers there are (listing them reads no name that was not asked for).
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, V> {
        self.entries.iter()
    }

    pub fn keys(&self) -> std::collections::btree_map::Keys<'_, String, V> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V> From<BTreeMap<String, V>> for Answers<V> {
    fn from(entries: BTreeMap<String, V>) -> Self {
        Answers {
            entries,
            ..Answers::default()
        }
    }
}

impl<V, Q> std::ops::Index<&Q> for Answers<V>
where
    String: Borrow<Q>,
    Q: Ord + Debug + ?Sized,
{
    type Output = V;

    fn index(&self, name: &Q) -> &V {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no {} {name:?} in the facts", self.kind),
        }
    }
}

impl<'a, V> IntoIterator for &'a Answers<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, String, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<V: Serialize> Serialize for Answers<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_asked_for_are_read_and_hand_made_facts_check_nothing() {
        let mut a: Answers<bool> = Answers::asked("check", ["asked".to_string()]);
        assert_eq!(a.get("asked"), None);
        a.insert("asked".into(), true);
        assert!(a["asked"]);
        let hand_made: Answers<bool> = Answers::default();
        assert_eq!(hand_made.get("anything"), None);
    }

    #[test]
    #[cfg_attr(
        debug_assertions,
        should_panic(expected = "the facts query did not ask for check \"not asked\"")
    )]
    fn a_name_not_asked_for_panics_in_debug_builds() {
        let a: Answers<bool> = Answers::asked("check", ["asked".to_string()]);
        assert_eq!(a.get("not asked"), None);
    }
}
