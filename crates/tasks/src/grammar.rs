//! Reber's finite-state grammar and its embedded version.
//!
//! Seven symbols B T P S X V E. Reber automaton (every branch with probability ½):
//!
//! | state | emits → next |
//! |---|---|
//! | 0 | B → 1 |
//! | 1 | T → 2, P → 3 |
//! | 2 | S → 2, X → 4 |
//! | 3 | T → 3, V → 5 |
//! | 4 | X → 3, S → 6 |
//! | 5 | P → 4, V → 6 |
//! | 6 | E → end |
//!
//! Embedded grammar: `B (T|P) <Reber string> (the same T|P) E`; predicting the next-to-last
//! symbol needs the second one, remembered across the whole inner string.
use rand::Rng;

pub const SYMBOLS: [char; 7] = ['B', 'T', 'P', 'S', 'X', 'V', 'E'];
pub const B: u8 = 0;
pub const T: u8 = 1;
pub const P: u8 = 2;
pub const S: u8 = 3;
pub const X: u8 = 4;
pub const V: u8 = 5;
pub const E: u8 = 6;

/// Reber automaton: (symbol, next state) pairs; state 7 is the end.
const REBER: [&[(u8, u8)]; 8] = [
    &[(B, 1)],
    &[(T, 2), (P, 3)],
    &[(S, 2), (X, 4)],
    &[(T, 3), (V, 5)],
    &[(X, 3), (S, 6)],
    &[(P, 4), (V, 6)],
    &[(E, 7)],
    &[],
];
const REBER_END: u8 = 7;

/// Which grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    Reber,
    Embedded,
}

/// A position in either automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain Reber state.
    Reber(u8),
    /// Embedded: before the first B.
    Start,
    /// Embedded: after B, expecting T or P.
    Branch,
    /// Embedded: inside the inner Reber string, remembering the branch symbol.
    Inner(u8, u8),
    /// Embedded: expecting E.
    Last,
    End,
}

impl Grammar {
    fn start(self) -> State {
        match self {
            Grammar::Reber => State::Reber(0),
            Grammar::Embedded => State::Start,
        }
    }

    fn transitions(self, s: State) -> Vec<(u8, State)> {
        let reber = |q: u8| REBER[q as usize].iter().copied();
        match s {
            State::Reber(q) => reber(q)
                .map(|(sym, n)| {
                    (
                        sym,
                        if n == REBER_END {
                            State::End
                        } else {
                            State::Reber(n)
                        },
                    )
                })
                .collect(),
            State::Start => vec![(B, State::Branch)],
            State::Branch => vec![(T, State::Inner(T, 0)), (P, State::Inner(P, 0))],
            State::Inner(branch, q) if q == REBER_END => vec![(branch, State::Last)],
            State::Inner(branch, q) => reber(q)
                .map(|(sym, n)| (sym, State::Inner(branch, n)))
                .collect(),
            State::Last => vec![(E, State::End)],
            State::End => vec![],
        }
    }

    /// Draws a string, taking every branch with probability ½.
    pub fn generate(self, rng: &mut impl Rng) -> Vec<u8> {
        let mut s = self.start();
        let mut out = Vec::new();
        loop {
            let tr = self.transitions(s);
            if tr.is_empty() {
                return out;
            }
            let (sym, next) = tr[rng.random_range(0..tr.len())];
            out.push(sym);
            s = next;
        }
    }

    /// For a grammatical string, the set of valid next symbols after each proper prefix
    /// `s[..=t]`, t = 0..len-1, as a 7-bit mask; `None` if the string is not in the grammar.
    pub fn next_sets(self, string: &[u8]) -> Option<Vec<u8>> {
        let mut s = self.start();
        let mut sets = Vec::with_capacity(string.len());
        for (t, &sym) in string.iter().enumerate() {
            let (_, next) = self.transitions(s).into_iter().find(|(c, _)| *c == sym)?;
            s = next;
            if t + 1 < string.len() {
                let mask = self
                    .transitions(s)
                    .iter()
                    .fold(0u8, |m, (c, _)| m | (1 << c));
                if mask == 0 {
                    return None; // symbols after the end
                }
                sets.push(mask);
            }
        }
        (s == State::End).then_some(sets)
    }

    /// Whether the string is a complete sentence of the grammar.
    pub fn accepts(self, string: &[u8]) -> bool {
        !string.is_empty() && self.next_sets(string).is_some()
    }

    /// The valid first symbols after `prefix`, or `None` if the prefix leaves the grammar.
    pub fn valid_after(self, prefix: &[u8]) -> Option<Vec<u8>> {
        let mut s = self.start();
        for &sym in prefix {
            s = self.transitions(s).into_iter().find(|(c, _)| *c == sym)?.1;
        }
        Some(self.transitions(s).into_iter().map(|(c, _)| c).collect())
    }
}

/// Renders symbols as letters.
pub fn to_text(s: &[u8]) -> String {
    s.iter()
        .map(|&c| SYMBOLS.get(c as usize).copied().unwrap_or('?'))
        .collect()
}

/// Parses letters into symbols.
pub fn from_text(s: &str) -> Option<Vec<u8>> {
    s.chars()
        .map(|c| SYMBOLS.iter().position(|&x| x == c).map(|i| i as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn known_strings_are_accepted_and_wrong_ones_rejected() {
        for s in ["BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPTVPSE", "BTXSE"] {
            assert!(Grammar::Reber.accepts(&from_text(s).unwrap()), "{s}");
        }
        for s in ["BTSSXXTVV", "BPVE", "BTXXVPXE", "TSXSE", "BTXSEE"] {
            assert!(!Grammar::Reber.accepts(&from_text(s).unwrap()), "{s}");
        }
        assert!(Grammar::Embedded.accepts(&from_text("BTBPVVETE").unwrap()));
        assert!(Grammar::Embedded.accepts(&from_text("BPBTXSEPE").unwrap()));
        // The branch symbol must come back before the final E.
        assert!(!Grammar::Embedded.accepts(&from_text("BTBPVVEPE").unwrap()));
    }

    #[test]
    fn next_sets_follow_the_automaton() {
        let s = from_text("BTSXSE").unwrap();
        let sets = Grammar::Reber.next_sets(&s).unwrap();
        let m = |cs: &[u8]| cs.iter().fold(0u8, |m, c| m | (1 << c));
        assert_eq!(
            sets,
            vec![m(&[T, P]), m(&[S, X]), m(&[S, X]), m(&[X, S]), m(&[E])]
        );
        let e = from_text("BPBTSXSEPE").unwrap();
        let sets = Grammar::Embedded.next_sets(&e).unwrap();
        assert_eq!(sets[0], m(&[T, P]));
        assert_eq!(sets[1], m(&[B]));
        assert_eq!(
            sets[7],
            m(&[P]),
            "after the inner E only the remembered branch symbol"
        );
        assert_eq!(sets[8], m(&[E]));
    }

    #[test]
    fn generated_strings_are_grammatical_with_expected_lengths() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for g in [Grammar::Reber, Grammar::Embedded] {
            let lens: Vec<usize> = (0..4000)
                .map(|_| {
                    let s = g.generate(&mut rng);
                    assert!(g.accepts(&s), "{}", to_text(&s));
                    s.len()
                })
                .collect();
            let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
            let (lo, hi, min) = match g {
                Grammar::Reber => (7.5, 8.5, 5),
                Grammar::Embedded => (11.5, 12.5, 9),
            };
            assert!(mean > lo && mean < hi, "{g:?} mean length {mean}");
            assert_eq!(*lens.iter().min().unwrap(), min);
        }
    }
}
