//! What counts as a secret: environment variables whose names say so, and values shaped like
//! credentials. The run folder never holds them (`results::redact`), and `plan`/`validate`
//! warn when a manifest writes one out literally.

/// Words that mark a variable as secret, matched case-insensitively anywhere in its name
/// (`PASS` covers `PASSWD` and `PASSWORD`; `KEY` covers `API_KEY`).
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "KEY",
    "SECRET",
    "PASS",
    "PWD",
    "AUTH",
    "CREDENTIAL",
    "COOKIE",
    "SESSION",
];

/// Prefixes of values that are credentials whatever their variable is called.
const SECRET_PREFIXES: &[&str] = &["Bearer ", "Basic ", "hf_", "sk-", "ghp_", "xox"];

/// Whether a variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Whether a value looks like a credential (a bearer token, a Hugging Face or API key).
pub fn looks_secret(value: &str) -> bool {
    SECRET_PREFIXES.iter().any(|p| value.starts_with(p))
}

/// Whether `name = value` must not be written down.
pub fn is_secret(name: &str, value: &str) -> bool {
    is_secret_name(name) || looks_secret(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_that_are_secrets() {
        for name in [
            "HF_TOKEN",
            "MY_PASSWD",
            "db_password",
            "OPENAI_API_KEY",
            "AUTH",
            "aws_credentials",
            "SESSION_ID",
            "PGPWD",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "CUDA_VISIBLE_DEVICES",
            "VLLM_LOGGING_LEVEL",
            "NCCL_NVLS_ENABLE",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
        assert!(is_secret("X", "Bearer abc"));
        assert!(is_secret("HEADER", "hf_abcdef"));
        assert!(!is_secret("UCX_NET_DEVICES", "all"));
    }
}
