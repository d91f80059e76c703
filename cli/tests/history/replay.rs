//! Reads back a history written with `EDDY_HISTORY_DUMP`, so a recorded run
//! can be checked again (after a change to the model or the checker, or
//! with other options) without running the cluster.

use eddy_client::EddyCode;

use super::check::Entry;
use super::model::{KeySpace, Op, PathIdx, Res, WriteKind};

/// Why a line of a dump could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    line: usize,
    why: String,
}

fn path(ks: &KeySpace, s: &str) -> Option<PathIdx> {
    let rest = s.strip_prefix(KeySpace::ROOT)?.strip_prefix("/d")?;
    let (d, name) = rest.split_once('/')?;
    ks.parse_name(d.parse().ok()?, name)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("id=0x")?, 16).ok()
}

fn op(ks: &KeySpace, s: &str) -> Option<Op> {
    let w: Vec<&str> = s.split_whitespace().collect();
    Some(match w.as_slice() {
        ["create", p, id, wt] => Op::Create {
            path: path(ks, p)?,
            id: hex(id)?,
            wt: if *wt == "CacheThrough" {
                WriteKind::CacheThrough
            } else {
                WriteKind::MustCache
            },
        },
        ["write+close", id] => Op::Close { id: hex(id)? },
        ["rename", a, b] => Op::Rename {
            from: path(ks, a)?,
            to: path(ks, b)?,
        },
        ["delete", p] => Op::Delete { path: path(ks, p)? },
        ["stat", p] => Op::Stat { path: path(ks, p)? },
        ["read", p] => Op::Read { path: path(ks, p)? },
        ["list", d] => Op::List {
            dir: d
                .strip_prefix(KeySpace::ROOT)?
                .strip_prefix("/d")?
                .parse()
                .ok()?,
        },
        _ => return None,
    })
}

/// `NotFound` (as `{:?}` prints it) back to the code.
fn code(s: &str) -> Option<EddyCode> {
    let mut snake = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_uppercase());
    }
    EddyCode::from_str_name(&snake)
}

/// The result and the note after it.
fn res(s: &str) -> Option<(Res, String)> {
    let inner = |p: &str| s.strip_prefix(p).and_then(|r| r.split_once(')'));
    if let Some(rest) = s.strip_prefix("Done") {
        return Some((Res::Done, rest.trim().to_string()));
    }
    if let Some((n, rest)) = inner("Read(") {
        return Some((Res::Read(n.parse().ok()?), rest.trim().to_string()));
    }
    if let Some((c, rest)) = inner("Err(") {
        return Some((Res::Err(code(c)?), rest.trim().to_string()));
    }
    if let Some((c, rest)) = inner("Unknown(") {
        return Some((Res::Unknown(code(c)?), rest.trim().to_string()));
    }
    if let Some(rest) = s.strip_prefix("Garbled(\"") {
        // The description holds no quote (it is made of numbers and words).
        let (why, rest) = rest.split_once("\")")?;
        return Some((Res::Garbled(why.to_string()), rest.trim().to_string()));
    }
    if let Some(rest) = s.strip_prefix("Stat { complete: ") {
        let (complete, rest) = rest.split_once(", length: ")?;
        let (length, rest) = rest.split_once(", id: ")?;
        let (id, _) = rest.split_once(" }")?;
        let id = match id {
            "None" => None,
            id => Some(id.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok()?),
        };
        let complete = complete == "true";
        return Some((
            Res::Stat {
                complete,
                length: length.parse().ok()?,
                id,
            },
            String::new(),
        ));
    }
    if let Some(rest) = s.strip_prefix("List([") {
        let (body, _) = rest.split_once("])")?;
        let mut v = Vec::new();
        for item in body.split("), ").filter(|i| !i.is_empty()) {
            let item = item.trim_start_matches('(').trim_end_matches(')');
            let (p, c) = item.split_once(", ")?;
            v.push((p.parse().ok()?, c == "true"));
        }
        return Some((Res::List(v), String::new()));
    }
    None
}

/// Parses a dump: `INVOKE RET cCLIENT OP -> RESULT [NOTE]` lines (nemesis
/// lines are skipped).
pub fn parse(ks: &KeySpace, text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("nemesis ") || line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| ParseError {
            line: i + 1,
            why: format!("{why}: {line}"),
        };
        let mut f = line.splitn(4, ' ');
        let (Some(inv), Some(ret), Some(client), Some(rest)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad("too few fields"));
        };
        let (op_s, res_s) = rest.split_once(" -> ").ok_or_else(|| bad("no ' -> '"))?;
        let op = op(ks, op_s).ok_or_else(|| bad("unknown operation"))?;
        let (res, note) = res(res_s).ok_or_else(|| bad("unknown result"))?;
        out.push(Entry {
            client: client
                .strip_prefix('c')
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| bad("client"))?,
            op,
            res,
            invoke: inv.parse().map_err(|_| bad("invocation time"))?,
            ret: ret.parse().map_err(|_| bad("return time"))?,
            note,
        });
    }
    Ok(out)
}
