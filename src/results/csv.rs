//! Minimal RFC 4180 CSV: fields are quoted only when they contain a comma, a quote or a line
//! break; records end with `\n`. Enough for the files sdnbed writes and reads back.

/// Appends one record to `out`.
pub fn write_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f.as_ref();
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}

/// Splits `text` into records of fields. Returns the 1-based line of an unterminated quote as
/// the error.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, usize> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quote_line = 0;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                quote_line = line;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(quote_line);
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        let mut out = String::new();
        write_record(&mut out, &["a", "b,c", "say \"hi\"", "two\nlines", ""]);
        write_record(&mut out, &["1", "2", "3", "4", "5"]);
        assert_eq!(
            out,
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\n1,2,3,4,5\n"
        );
        let rows = parse(&out).unwrap();
        assert_eq!(rows[0], vec!["a", "b,c", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(rows[1], vec!["1", "2", "3", "4", "5"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(parse("a,\"b\n"), Err(1));
    }
}
