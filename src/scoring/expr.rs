//! Stage conditions such as `fit >= 30 and engagement >= 25`: comparisons of `fit`,
//! `engagement` and `score` with whole numbers, joined by `and`, `or`, `not` and parentheses.
//!
//! Hand-written rather than an expression crate: the language is six words and six operators,
//! and a general evaluator would accept (and then fail on) far more than a stage rule means.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Fit,
    Engagement,
    Score,
}

impl Var {
    fn name(self) -> &'static str {
        match self {
            Var::Fit => "fit",
            Var::Engagement => "engagement",
            Var::Score => "score",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Compare(Var, Op, i64),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

/// The figures a condition reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub fit: i64,
    pub engagement: i64,
    pub score: i64,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, at: 0 };
        let c = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(c),
            Some(t) => Err(format!("unexpected '{t}' after a complete condition")),
        }
    }

    /// The condition as written, without parentheses around the whole.
    pub fn plain(&self) -> String {
        let text = self.to_string();
        match self {
            Condition::And(..) | Condition::Or(..) => text[1..text.len() - 1].to_string(),
            _ => text,
        }
    }

    pub fn holds(&self, f: Figures) -> bool {
        match self {
            Condition::Compare(var, op, n) => {
                let v = match var {
                    Var::Fit => f.fit,
                    Var::Engagement => f.engagement,
                    Var::Score => f.score,
                };
                match op {
                    Op::Ge => v >= *n,
                    Op::Gt => v > *n,
                    Op::Le => v <= *n,
                    Op::Lt => v < *n,
                    Op::Eq => v == *n,
                    Op::Ne => v != *n,
                }
            }
            Condition::And(a, b) => a.holds(f) && b.holds(f),
            Condition::Or(a, b) => a.holds(f) || b.holds(f),
            Condition::Not(a) => !a.holds(f),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare(v, op, n) => write!(f, "{} {} {n}", v.name(), op.text()),
            Condition::And(a, b) => write!(f, "({a} and {b})"),
            Condition::Or(a, b) => write!(f, "({a} or {b})"),
            Condition::Not(a) => write!(f, "not {a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Number(i64),
    Op(Op),
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => f.write_str(w),
            Token::Number(n) => write!(f, "{n}"),
            Token::Op(o) => f.write_str(o.text()),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    if text.len() > 1000 {
        return Err("longer than 1000 characters".into());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '>' | '<' | '=' | '!' => {
                let (op, len) = match (c, next) {
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('>', _) => (Op::Gt, 1),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    _ => return Err("'!' must be followed by '='".into()),
                };
                out.push(Token::Op(op));
                i += len;
            }
            '-' | '0'..='9' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = s
                    .parse::<i64>()
                    .map_err(|_| format!("'{s}' is not a whole number"))?;
                out.push(Token::Number(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Word(
                    chars[start..i].iter().collect::<String>().to_lowercase(),
                ));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    if out.is_empty() {
        return Err("empty condition".into());
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(x)) if x == w)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.not()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, String> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, String> {
        match self.next() {
            Some(Token::Open) => {
                let c = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(c),
                    _ => Err("a '(' is not closed".into()),
                }
            }
            Some(Token::Word(w)) => {
                let var = match w.as_str() {
                    "fit" => Var::Fit,
                    "engagement" => Var::Engagement,
                    "score" => Var::Score,
                    other => {
                        return Err(format!(
                            "unknown name '{other}': use fit, engagement or score"
                        ))
                    }
                };
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    _ => return Err(format!("'{w}' must be followed by >=, >, <=, <, == or !=")),
                };
                match self.next() {
                    Some(Token::Number(n)) => Ok(Condition::Compare(var, op, n)),
                    _ => Err(format!("'{w} {}' must be followed by a number", op.text())),
                }
            }
            Some(t) => Err(format!("unexpected '{t}'")),
            None => Err("the condition ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fit: i64, engagement: i64) -> Figures {
        Figures {
            fit,
            engagement,
            score: fit + engagement,
        }
    }

    #[test]
    fn conditions_read_like_the_readme() {
        let c = Condition::parse("fit >= 30 and engagement >= 25").unwrap();
        assert!(c.holds(f(30, 25)));
        assert!(!c.holds(f(29, 100)));
        let c = Condition::parse("score > 80 or (fit >= 40 and not engagement < 10)").unwrap();
        assert!(c.holds(f(50, 31)));
        assert!(c.holds(f(40, 10)));
        assert!(!c.holds(f(40, 9)));
        let c = Condition::parse("FIT = -5").unwrap();
        assert!(c.holds(f(-5, 0)));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("", "empty"),
            ("fit >=", "number"),
            ("fit >= 3 and", "ends too early"),
            ("(fit >= 3", "not closed"),
            ("fitness >= 3", "unknown name 'fitness'"),
            ("fit >= 3 engagement", "unexpected 'engagement'"),
            ("fit ! 3", "'!'"),
            ("fit >= 3 & x", "unexpected character '&'"),
        ] {
            let e = Condition::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
