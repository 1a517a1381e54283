//! Replica names: `server-<n>` at boot, `server-<6 lowercase hex>` generated.

/// The name of the `n`-th replica started at boot.
pub fn boot_name(n: u64) -> String {
    format!("server-{n}")
}

/// A fresh generated name that `taken` does not hold.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let name = format!("server-{:06x}", fastrand::u32(..0x0100_0000));
        if !taken(&name) {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_have_the_spec_shape_and_avoid_taken_ones() {
        for _ in 0..1000 {
            let name = generate(|n| n.ends_with('0'));
            let hex = name.strip_prefix("server-").expect("prefix");
            assert_eq!(hex.len(), 6, "{name}");
            assert!(
                hex.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(!name.ends_with('0'));
        }
        assert_eq!(boot_name(3), "server-3");
    }
}
