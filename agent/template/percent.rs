//! Python's `%` operator in templates: `'stable/%s' % openstack_release`.
//!
//! Jinja2 hands `a % b` to Python, so a string on the left is printf-style formatting and numbers
//! take Python's floor modulo. minijinja only knows the numeric modulo (`'x%s' % y` is "impossible
//! operation"), and it has no hook for binary operators. So before a template is compiled, every
//! `a % b` in it is rewritten, using minijinja's own parser (spans of the `BinOp` nodes), into a
//! call `__kiln_percent(a, b)` (`__kiln_percent_tuple` when `b` is a tuple literal, which Python
//! spreads over the conversions while a list is one value). stackhpc-kayobe-config relies on it
//! (`etc/kayobe/pulp.yml`: `'stackhpc_pulp_repo_rocky_9_%s_appstream_version' % minor_version`).
//!
//! The formatting itself is written here, not taken from a crate, because it must be Python's:
//! its conversions (`%s` is `str()`, `%r` is `repr()`, `%d` truncates a float, `%g` drops trailing
//! zeros and switches to an exponent at Python's thresholds), its flags and its error messages.

use super::filters::type_debug;
use super::pyrepr::{py_float, py_repr, py_str};
use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::value::{Value as JV, ValueKind};
use minijinja::{Error, ErrorKind};
use std::borrow::Cow;

/// The name of the function a rewritten `a % b` calls.
pub(crate) const CALL: &str = "__kiln_percent";
/// The same, when `b` is a tuple literal.
pub(crate) const CALL_TUPLE: &str = "__kiln_percent_tuple";

/// `source` with every `a % b` replaced by a call to [`CALL`]. Text without a `%` outside the
/// `{% %}` delimiters is returned as it is, without parsing; so is text that does not parse (the
/// compile that follows reports the syntax error on the original text).
pub(crate) fn rewrite_template<'a>(
    source: &'a str,
    syntax: &minijinja::syntax::SyntaxConfig,
) -> Cow<'a, str> {
    if !has_bare_percent(source) {
        return Cow::Borrowed(source);
    }
    let Ok(tree) = minijinja::machinery::parse(source, "<template>", syntax.clone()) else {
        return Cow::Borrowed(source);
    };
    let mut found = Vec::new();
    stmt(&tree, &mut found);
    apply(source, found, syntax)
}

/// As [`rewrite_template`], for a bare expression (a `when:` condition).
pub(crate) fn rewrite_expr(source: &str) -> Cow<'_, str> {
    if !source.contains('%') {
        return Cow::Borrowed(source);
    }
    let Ok(tree) = minijinja::machinery::parse_expr(source) else {
        return Cow::Borrowed(source);
    };
    let mut found = Vec::new();
    expr(&tree, &mut found);
    apply(source, found, &minijinja::syntax::SyntaxConfig::default())
}

/// A `%` that is not part of a `{%` or `%}` delimiter.
fn has_bare_percent(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(i > 0 && b[i - 1] == b'{')
            && !(i + 1 < b.len() && b[i + 1] == b'}')
            && !(i > 1 && b[i - 2] == b'{' && matches!(b[i - 1], b'-' | b'+'))
            && !(i + 2 < b.len() && b[i + 2] == b'}' && matches!(b[i + 1], b'-' | b'+'))
    })
}

/// One `a % b` found: the byte range of the whole operation and of its `%` operator.
///
/// The operands' own spans cannot be used: a filter's span starts at its name, not at the value
/// it filters. The operator is the last `%` outside brackets in the operation's tokens (the
/// operator is left-associative, and the right operand binds tighter, so any `%` at the top level
/// of the text belongs to the left operand or is this one).
struct Found {
    whole: (usize, usize),
    op: Option<(usize, usize)>,
    tuple: bool,
}

fn find_operator(
    source: &str,
    whole: (usize, usize),
    syntax: &minijinja::syntax::SyntaxConfig,
) -> Option<(usize, usize)> {
    use minijinja::machinery::Token;
    let text = source.get(whole.0..whole.1)?;
    let mut depth = 0i32;
    let mut last = None;
    for tok in minijinja::machinery::tokenize(text, true, syntax.clone()) {
        let (tok, span) = tok.ok()?;
        match tok {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => depth += 1,
            Token::ParenClose | Token::BracketClose | Token::BraceClose => depth -= 1,
            Token::Mod if depth == 0 => last = Some(range(span)),
            _ => {}
        }
    }
    last.map(|(a, b)| (whole.0 + a, whole.0 + b))
}

fn range(span: minijinja::machinery::Span) -> (usize, usize) {
    (span.start_offset as usize, span.end_offset as usize)
}

/// The text of `source[from..to]` with the operations inside it rewritten (they nest: the
/// operands of one may hold others).
fn emit(source: &str, found: &[Found], from: usize, to: usize, out: &mut String) {
    let mut at = from;
    for f in found {
        if f.whole.0 < at || f.whole.1 > to {
            continue;
        }
        out.push_str(&source[at..f.whole.0]);
        let Some(op) = f.op else { continue };
        out.push_str(if f.tuple { CALL_TUPLE } else { CALL });
        out.push_str("((");
        emit(source, found, f.whole.0, op.0, out);
        out.push_str("), (");
        emit(source, found, op.1, f.whole.1, out);
        out.push_str("))");
        at = f.whole.1;
    }
    out.push_str(&source[at..to]);
}

fn apply<'a>(
    source: &'a str,
    mut found: Vec<Found>,
    syntax: &minijinja::syntax::SyntaxConfig,
) -> Cow<'a, str> {
    // a span that does not lie on character boundaries, or an operator not found, would mean the
    // parser and this code disagree about offsets: then leave the text alone rather than
    // corrupt it (the compiler then reports minijinja's own error)
    for f in &mut found {
        f.op = find_operator(source, f.whole, syntax);
    }
    found.retain(|f| f.op.is_some());
    if found.is_empty() {
        return Cow::Borrowed(source);
    }
    // outermost first, so that `emit` skips the ones nested inside
    found.sort_by_key(|f| (f.whole.0, std::cmp::Reverse(f.whole.1)));
    let mut out = String::with_capacity(source.len() + 32 * found.len());
    emit(source, &found, 0, source.len(), &mut out);
    Cow::Owned(out)
}

fn stmts(list: &[Stmt<'_>], found: &mut Vec<Found>) {
    for s in list {
        stmt(s, found);
    }
}

fn stmt(s: &Stmt<'_>, found: &mut Vec<Found>) {
    match s {
        Stmt::Template(t) => stmts(&t.children, found),
        Stmt::EmitExpr(e) => expr(&e.expr, found),
        Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
        Stmt::ForLoop(f) => {
            expr(&f.target, found);
            expr(&f.iter, found);
            if let Some(e) = &f.filter_expr {
                expr(e, found);
            }
            stmts(&f.body, found);
            stmts(&f.else_body, found);
        }
        Stmt::IfCond(i) => {
            expr(&i.expr, found);
            stmts(&i.true_body, found);
            stmts(&i.false_body, found);
        }
        Stmt::WithBlock(w) => {
            for (a, b) in &w.assignments {
                expr(a, found);
                expr(b, found);
            }
            stmts(&w.body, found);
        }
        Stmt::Set(s) => {
            expr(&s.target, found);
            expr(&s.expr, found);
        }
        Stmt::SetBlock(s) => {
            if let Some(e) = &s.filter {
                expr(e, found);
            }
            stmts(&s.body, found);
        }
        Stmt::AutoEscape(a) => {
            expr(&a.enabled, found);
            stmts(&a.body, found);
        }
        Stmt::FilterBlock(f) => {
            expr(&f.filter, found);
            stmts(&f.body, found);
        }
        Stmt::Block(b) => stmts(&b.body, found),
        Stmt::Import(i) => expr(&i.expr, found),
        Stmt::FromImport(i) => expr(&i.expr, found),
        Stmt::Extends(e) => expr(&e.name, found),
        Stmt::Include(i) => expr(&i.name, found),
        Stmt::Macro(m) => {
            exprs(&m.defaults, found);
            stmts(&m.body, found);
        }
        Stmt::CallBlock(c) => {
            call(&c.call, found);
            exprs(&c.macro_decl.defaults, found);
            stmts(&c.macro_decl.body, found);
        }
        Stmt::Do(d) => call(&d.call, found),
    }
}

fn exprs(list: &[Expr<'_>], found: &mut Vec<Found>) {
    for e in list {
        expr(e, found);
    }
}

fn args(list: &[CallArg<'_>], found: &mut Vec<Found>) {
    for a in list {
        match a {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => expr(e, found),
        }
    }
}

fn call(c: &ast::Call<'_>, found: &mut Vec<Found>) {
    expr(&c.expr, found);
    args(&c.args, found);
}

fn expr(e: &Expr<'_>, found: &mut Vec<Found>) {
    match e {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            expr(&s.expr, found);
            for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                expr(part, found);
            }
        }
        Expr::UnaryOp(u) => expr(&u.expr, found),
        Expr::BinOp(b) => {
            expr(&b.left, found);
            expr(&b.right, found);
            if matches!(b.op, ast::BinOpKind::Rem) {
                found.push(Found {
                    whole: range(b.span()),
                    op: None,
                    tuple: matches!(b.right, Expr::Tuple(_)),
                });
            }
        }
        Expr::Compare(c) => {
            expr(&c.expr, found);
            for op in &c.ops {
                expr(&op.expr, found);
            }
        }
        Expr::IfExpr(i) => {
            expr(&i.test_expr, found);
            expr(&i.true_expr, found);
            if let Some(f) = &i.false_expr {
                expr(f, found);
            }
        }
        Expr::Filter(f) => {
            if let Some(e) = &f.expr {
                expr(e, found);
            }
            args(&f.args, found);
        }
        Expr::Test(t) => {
            expr(&t.expr, found);
            args(&t.args, found);
        }
        Expr::GetAttr(g) => expr(&g.expr, found),
        Expr::GetItem(g) => {
            expr(&g.expr, found);
            expr(&g.subscript_expr, found);
        }
        Expr::Call(c) => call(c, found),
        Expr::List(l) => exprs(&l.items, found),
        Expr::Tuple(t) => exprs(&t.items, found),
        Expr::Map(m) => {
            exprs(&m.keys, found);
            exprs(&m.values, found);
        }
    }
}

/// Register the functions the rewrite calls.
pub(crate) fn register(env: &mut minijinja::Environment<'static>) {
    env.add_function(CALL, |a: JV, b: JV| percent(&a, &b, false));
    env.add_function(CALL_TUPLE, |a: JV, b: JV| percent(&a, &b, true));
}

fn type_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Python's `a % b`.
pub(crate) fn percent(a: &JV, b: &JV, tuple: bool) -> Result<JV, Error> {
    if a.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "the left side of '%' is undefined",
        ));
    }
    if let Some(fmt) = a.as_str() {
        if b.is_undefined() {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "the right side of '%' is undefined",
            ));
        }
        return format(fmt, b, tuple).map(JV::from);
    }
    let number = |v: &JV| matches!(v.kind(), ValueKind::Number | ValueKind::Bool);
    if number(a) && number(b) {
        return modulo(a, b);
    }
    Err(type_error(format!(
        "unsupported operand type(s) for %: '{}' and '{}'",
        type_debug(a.clone()),
        type_debug(b.clone())
    )))
}

/// Python's modulo: the result takes the sign of the divisor.
fn modulo(a: &JV, b: &JV) -> Result<JV, Error> {
    if a.is_integer() && b.is_integer()
        || a.kind() == ValueKind::Bool
        || b.kind() == ValueKind::Bool
    {
        if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
            if y == 0 {
                return Err(type_error("integer division or modulo by zero"));
            }
            let r = x.rem_euclid(y);
            let r = if y < 0 && r != 0 { r + y } else { r };
            return Ok(i64::try_from(r)
                .map(JV::from)
                .unwrap_or_else(|_| JV::from(r)));
        }
    }
    let (x, y) = (as_f64(a), as_f64(b));
    if y == 0.0 {
        return Err(type_error("float modulo"));
    }
    let mut r = x % y;
    if r != 0.0 && (r < 0.0) != (y < 0.0) {
        r += y;
    }
    Ok(JV::from(r))
}

fn as_i128(v: &JV) -> Option<i128> {
    if v.kind() == ValueKind::Bool {
        return Some(i128::from(v.is_true()));
    }
    i128::try_from(v.clone()).ok()
}

fn as_f64(v: &JV) -> f64 {
    if v.kind() == ValueKind::Bool {
        return if v.is_true() { 1.0 } else { 0.0 };
    }
    f64::try_from(v.clone()).unwrap_or(f64::NAN)
}

/// One conversion specifier: `%[(key)][flags][width][.precision]type`.
#[derive(Default)]
struct Spec {
    key: Option<String>,
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
    conv: char,
}

/// Python's `fmt % args`.
fn format(fmt: &str, b: &JV, tuple: bool) -> Result<String, Error> {
    let positional: Vec<JV> = if tuple {
        b.try_iter()?.collect()
    } else {
        vec![b.clone()]
    };
    // a mapping (anything indexable that is not a tuple or a string, in Python) may be used by
    // `%(key)s` and is not "an argument left over"
    let mapping = !tuple && matches!(b.kind(), ValueKind::Map | ValueKind::Seq);
    let mut next = 0usize;
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.char_indices().peekable();
    let mut used_key = false;
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        if chars.peek().map(|&(_, c)| c) == Some('(') {
            chars.next();
            let mut depth = 1;
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                key.push(c);
            }
            if depth != 0 {
                return Err(type_error("incomplete format key"));
            }
            spec.key = Some(key);
        }
        while let Some(&(_, c)) = chars.peek() {
            match c {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(&(_, d)) = chars.peek() {
                let Some(v) = d.to_digit(10) else { break };
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(v as usize));
                chars.next();
            }
            n
        };
        if chars.peek().map(|&(_, c)| c) == Some('*') {
            return Err(type_error(
                "'*' widths in '%' formatting are not supported by kiln",
            ));
        }
        spec.width = number(&mut chars).unwrap_or(0);
        if chars.peek().map(|&(_, c)| c) == Some('.') {
            chars.next();
            spec.precision = Some(number(&mut chars).unwrap_or(0));
        }
        // length modifiers are accepted and ignored, as in Python
        while matches!(chars.peek().map(|&(_, c)| c), Some('h' | 'l' | 'L')) {
            chars.next();
        }
        let Some((at, conv)) = chars.next() else {
            return Err(type_error("incomplete format"));
        };
        spec.conv = conv;
        if conv == '%' && spec.key.is_none() {
            out.push('%');
            continue;
        }
        let arg = match &spec.key {
            Some(k) => {
                used_key = true;
                if b.kind() != ValueKind::Map || tuple {
                    return Err(type_error("format requires a mapping"));
                }
                let v = b.get_attr(k).unwrap_or(JV::UNDEFINED);
                if v.is_undefined() {
                    return Err(type_error(format!("KeyError: '{k}'")));
                }
                v
            }
            None => {
                let v = positional
                    .get(next)
                    .cloned()
                    .ok_or_else(|| type_error("not enough arguments for format string"))?;
                next += 1;
                v
            }
        };
        if conv == '%' {
            out.push('%');
            continue;
        }
        let text = convert(&spec, &arg).map_err(|e| match e {
            Conv::Bad => type_error(format!(
                "unsupported format character '{conv}' (0x{:x}) at index {at}",
                conv as u32
            )),
            Conv::Err(e) => e,
        })?;
        pad(&spec, &text, &mut out);
    }
    if next < positional.len() && !used_key && !mapping {
        return Err(type_error(
            "not all arguments converted during string formatting",
        ));
    }
    Ok(out)
}

enum Conv {
    Bad,
    Err(Error),
}

impl From<Error> for Conv {
    fn from(e: Error) -> Self {
        Conv::Err(e)
    }
}

fn convert(spec: &Spec, v: &JV) -> Result<String, Conv> {
    let mut s = String::new();
    match spec.conv {
        's' | 'r' | 'a' => {
            if spec.conv == 's' {
                py_str(v, &mut s)?;
            } else {
                py_repr(v, &mut s)?;
            }
            if let Some(p) = spec.precision {
                s = s.chars().take(p).collect();
            }
            Ok(s)
        }
        'd' | 'i' | 'u' => {
            let n = real_to_int(v, spec.conv)?;
            Ok(signed(spec, n < 0, n.unsigned_abs().to_string()))
        }
        'x' | 'X' | 'o' => {
            if !(v.is_integer() || v.kind() == ValueKind::Bool) {
                return Err(Conv::Err(type_error(format!(
                    "%{} format: an integer is required, not {}",
                    spec.conv,
                    type_debug(v.clone())
                ))));
            }
            let n = as_i128(v).unwrap_or(0);
            let mag = n.unsigned_abs();
            let digits = match spec.conv {
                'x' => format!("{}{mag:x}", if spec.alt { "0x" } else { "" }),
                'X' => format!("{}{mag:X}", if spec.alt { "0X" } else { "" }),
                _ => format!("{}{mag:o}", if spec.alt { "0o" } else { "" }),
            };
            Ok(signed(spec, n < 0, digits))
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let f = real(v)?;
            let p = spec.precision.unwrap_or(6);
            let body = if f.is_nan() {
                "nan".to_string()
            } else if f.is_infinite() {
                "inf".to_string()
            } else {
                match spec.conv {
                    'e' | 'E' => exp(f.abs(), p),
                    'f' | 'F' => format!("{:.*}", p, f.abs()),
                    _ => general(f.abs(), p, spec.alt),
                }
            };
            let body = if spec.conv.is_ascii_uppercase() {
                body.to_uppercase()
            } else {
                body
            };
            Ok(signed(spec, f.is_sign_negative() && !f.is_nan(), body))
        }
        'c' => {
            if let Some(s) = v.as_str() {
                if s.chars().count() == 1 {
                    return Ok(s.to_string());
                }
                return Err(Conv::Err(type_error(
                    "%c requires an int or a unicode character",
                )));
            }
            as_i128(v)
                .and_then(|n| u32::try_from(n).ok())
                .and_then(char::from_u32)
                .map(String::from)
                .ok_or_else(|| Conv::Err(type_error("%c arg not in range(0x110000)")))
        }
        _ => Err(Conv::Bad),
    }
}

fn real(v: &JV) -> Result<f64, Conv> {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => Ok(as_f64(v)),
        _ => Err(Conv::Err(type_error(format!(
            "must be real number, not {}",
            type_debug(v.clone())
        )))),
    }
}

fn real_to_int(v: &JV, conv: char) -> Result<i128, Conv> {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool if v.is_integer() || v.kind() == ValueKind::Bool => {
            Ok(as_i128(v).unwrap_or(0))
        }
        ValueKind::Number => {
            let f = as_f64(v);
            if !f.is_finite() {
                return Err(Conv::Err(type_error(format!(
                    "cannot convert float {} to integer",
                    py_float(f)
                ))));
            }
            Ok(f.trunc() as i128)
        }
        _ => Err(Conv::Err(type_error(format!(
            "%{conv} format: a real number is required, not {}",
            type_debug(v.clone())
        )))),
    }
}

/// The sign (from the flags) in front of a number's digits; zero padding goes between them.
fn signed(spec: &Spec, negative: bool, digits: String) -> String {
    let sign = if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    if spec.zero && !spec.left && spec.width > sign.len() + digits.len() {
        let (prefix, rest) = match digits.get(..2) {
            Some(p @ ("0x" | "0X" | "0o")) => (p, &digits[2..]),
            _ => ("", digits.as_str()),
        };
        let fill = spec.width - sign.len() - digits.len();
        return format!("{sign}{prefix}{}{rest}", "0".repeat(fill));
    }
    format!("{sign}{digits}")
}

fn pad(spec: &Spec, text: &str, out: &mut String) {
    let len = text.chars().count();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        out.push_str(text);
        out.extend(std::iter::repeat(' ').take(fill));
    } else {
        out.extend(std::iter::repeat(' ').take(fill));
        out.push_str(text);
    }
}

/// `%e`: one digit, the fraction, and an exponent of at least two digits with its sign.
fn exp(f: f64, p: usize) -> String {
    let s = format!("{:.*e}", p, f);
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// `%g`: `p` significant digits, fixed or exponent notation by Python's rule, trailing zeros
/// removed unless `#`.
fn general(f: f64, p: usize, alt: bool) -> String {
    let p = p.max(1);
    if f == 0.0 {
        return if alt {
            format!("{:.*}", p - 1, 0.0)
        } else {
            "0".into()
        };
    }
    // the exponent after rounding to p significant digits
    let rounded = format!("{:.*e}", p - 1, f);
    let x: i32 = rounded
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let text = if x >= -4 && x < p as i32 {
        format!("{:.*}", (p as i32 - 1 - x).max(0) as usize, f)
    } else {
        exp(f, p - 1)
    };
    if alt {
        return text;
    }
    let (num, tail) = match text.find('e') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text.as_str(), ""),
    };
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    format!("{num}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> minijinja::Environment<'static> {
        let mut env = minijinja::Environment::new();
        register(&mut env);
        env
    }

    fn render(src: &str, ctx: JV) -> Result<String, Error> {
        let syntax = minijinja::syntax::SyntaxConfig::default();
        let src = rewrite_template(src, &syntax);
        env().render_str(&src, ctx)
    }

    #[test]
    fn rewrites_only_percent_operations() {
        let syntax = minijinja::syntax::SyntaxConfig::default();
        assert_eq!(
            rewrite_template("{% if a %}100%{% endif %}", &syntax),
            "{% if a %}100%{% endif %}"
        );
        assert_eq!(
            rewrite_template("{{ 'a%s' % b | upper }}", &syntax),
            "{{ __kiln_percent(('a%s' ), ( b | upper)) }}"
        );
        assert_eq!(
            rewrite_template("{{ '%s-%s' % (a, b) }}", &syntax),
            "{{ __kiln_percent_tuple(('%s-%s' ), ( (a, b))) }}"
        );
        // not parseable: left alone for the compiler to report
        assert_eq!(rewrite_template("{{ 'a' % }}", &syntax), "{{ 'a' % }}");
    }

    #[test]
    fn python_formatting() {
        let ctx = minijinja::context! {
            rel => "2024.1", n => 7, f => 2.5, l => vec![JV::from("a"), JV::from(1)],
            d => minijinja::context! { k => "v" }, none => (), minor => 4
        };
        let cases = [
            ("{{ 'stable/%s' % rel }}", "stable/2024.1"),
            ("{{ 'repo_%s_appstream' % minor }}", "repo_4_appstream"),
            ("{{ '%s-%s' % (rel, n) }}", "2024.1-7"),
            ("{{ '%s' % l }}", "['a', 1]"),
            ("{{ '%r' % rel }}", "'2024.1'"),
            ("{{ '%s' % none }}", "None"),
            (
                "{{ '%05d|%-4d|%+d|% d' % (n, n, n, n) }}",
                "00007|7   |+7| 7",
            ),
            ("{{ '%d' % f }}", "2"),
            (
                "{{ '%.2f|%6.1f|%e' % (f, f, f) }}",
                "2.50|   2.5|2.500000e+00",
            ),
            (
                "{{ '%g|%g|%g|%g' % (f, 100000, 1000000, 0.0001) }}",
                "2.5|100000|1e+06|0.0001",
            ),
            ("{{ '%x|%#x|%o|%X' % (255, 255, 8, 255) }}", "ff|0xff|10|FF"),
            ("{{ '%(k)s!' % d }}", "v!"),
            ("{{ '%.3s' % rel }}", "202"),
            ("{{ '100%%' % () }}", "100%"),
            ("{{ '%s' % ('a' % ()) }}", "a"),
            (
                "{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 7.5 % 2 }}",
                "1|2|-2|1.5",
            ),
            ("{% set x = 'v%s' % n %}{{ x }}", "v7"),
            ("{% if 'a%s' % n == 'a7' %}yes{% endif %}", "yes"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, ctx.clone()).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn python_errors() {
        let ctx = minijinja::context! { n => 7, s => "x" };
        for (src, want) in [
            ("{{ '%s %s' % n }}", "not enough arguments"),
            ("{{ 'abc' % n }}", "not all arguments converted"),
            (
                "{{ '%d' % s }}",
                "%d format: a real number is required, not str",
            ),
            ("{{ '%y' % n }}", "unsupported format character 'y'"),
            ("{{ n % 0 }}", "modulo by zero"),
            ("{{ missing % 2 }}", "undefined"),
        ] {
            let e = render(src, ctx.clone()).expect_err(src).to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn expressions() {
        assert_eq!(
            rewrite_expr("'x%s' % a == 'x1'"),
            "__kiln_percent(('x%s' ), ( a)) == 'x1'"
        );
        assert_eq!(rewrite_expr("a == 1"), "a == 1");
    }
}
