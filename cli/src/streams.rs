//! `xnai-streams streams`: the streams there are.

use crate::output::{Failure, Out, table};
use crate::target::Target;

pub(crate) async fn run(target: &Target, out: Out) -> Result<u8, Failure> {
    let manager = target.manager().await?;
    let streams = manager.list_streams().await?;
    if out.json {
        out.json(&streams)?;
        return Ok(0);
    }
    if streams.is_empty() {
        out.line("no streams")?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "LENGTH", "GROUPS"]);
    for s in &streams {
        t.add_row(vec![
            s.name.clone(),
            s.length.to_string(),
            s.groups.join(", "),
        ]);
    }
    out.table(&t)?;
    Ok(0)
}
