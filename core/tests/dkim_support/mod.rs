//! Keys, messages and helpers shared by the `dkim_*` integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use petrel_core::dkim::{
    Canon, SignatureResult, Signer, SignerConfig, SigningKey, Verifier, VerifyLimits,
};
use petrel_core::dns::{Answer, Record};

/// A 2048-bit RSA key made for these tests with `openssl genpkey -algorithm RSA`.
pub const RSA_2048_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC2yBj/g8Rqng9n
KepG7Mu3cKls9WbQlIuvjuw+yFxTGkOaPs0OEa1uI695hWyvA7G0mGTl9kaR2nSg
2QY+8OmUz0jhnA5CtzKxz0iR3Zloedyl3UqMCtR1+dqt384UiUNgSwyjbc0EoScu
ZZTfHKv3BO2AnFyDa80ld85ilmkV6nUfPVVzThw9q74H6wmMXr2BBFjs5dbhwvbp
xfSfcgRSwwJnIt8VcIeiX76oqcg56vsQL7YqPNTN59EkxBZkAXoiqME9DQFK0CHc
0E80hGlPq0/Rjoj/14Kfm93tiZW+XjYdzoMi2i2T6y4+gCttjsgvVSmosVrXgFeG
LZoIV/bVAgMBAAECggEAGKawfmeASkvScnyr8NBXYkBizUPkj611EGKTeJ0vnHKe
mvMs1yCptgDAlgBZadoy8ZMbCou2NU4T7CyQ49S8f/obz3erUbKg9uuokymimr1S
tZj8iJoeUOH3bPtR8SGZEWfVxsXUgHMWlHKVSyj0BV7oBDAyZvQXSR4ZGuFDv3Vy
nSlH86yV76xnp+mgkQsPNPQaBnH9UggJ+NSxo2wO3VPXUaYx284UWZ+fCTqpOB4B
Uf+EGwnk5A8epx2ZC4FWARClC+LZw5vY5TInozMv8QOwkSup+el2NV+f1zfAo2KN
YxcQo5CZRwlkE5sZ3jtgqGNbkWgx+RhF50/7ONdCoQKBgQDvMbyGSzFVhy0TetWZ
f5d8ZL34jR99GKW45XeNwKM4fbnKrxuYIpvryMOBRp6AD+uwktIEBDptFBdcFqVr
o2fWdlHpLOakV1DU1R1znrPigwsF1pSvDJc2NLHP56q7yG8c2aOTJA9TdCNkZO5y
ovpEusc55PKVgC7wcd1ze0evYQKBgQDDn7Iz9S+8nm5K2NCT8BYi1gtV0qZ9lW7j
0G2U8MJn9I6ClQwqG7ipcUVFyz9wbfe/cZcC6yJVBFCkmy+Vji+EbLH1pBrf8G5h
AZ1qSr1E4U1bdOIj/iwSQ5KHTBFabHm9DM49pkm1fSG5RLioF28/gbt5uzGBaAXQ
x1ikojx/9QKBgDkV/LFsVqzb4xUoFrxYqDXG8VPVknNPo5WaJktNc2bzEpld608G
y4GdW5OJ4CAeLJjqoXbV73/C8MRIn1guGoUjne7xiWYldKQm7K2AbdwcfE/7Y2bX
sWr9boZ4+tVwQ5x2EMT4MTQwnpXCROpVHTe0AAJAMukdO5alBj4eaQBhAoGBAJoC
AJ6NGg7pv7TnKpY9PoAgeP4RAAgAfDOYJJ1MShDjZMqDIveHqYKkbT/8Oi5+NLyg
ZZ3jlbzOz9o3Xmfkb55WoGfd0VaaB5wRVGeY/ZbbtTYaN+rUMMgUMKiZh1Pj8JeY
HEpGvuLF56Xe521WPbwGm5zDdb8GMQXj2vKJ0w19AoGBALsRSHNN17TYnmjbw/Av
cl1crxzNsc3kyFpes8rWS4C515yLkE1nJKLWKvRewnOZ59bU4PAnXye9pK6e+vLx
pToUDJhMearM9U/ZG454NS7Lpcdl2GAKTjchP7TFub41YnvjYDqTcotGdf79wJ4N
G++75F0M9M4Wb7/+U4ltsaf4
-----END PRIVATE KEY-----
";

/// A 1024-bit RSA key (`openssl genpkey`), only for verifying legacy-size keys.
pub const RSA_1024_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAMEqy6mxNfQnkAg7
CYWo+ZB1ej6Jb3QxLdMC+zWU4mM13+lf+Q+7Cb3DAIa9ISs30F1iDXKVz+PlZe8F
KJoqo4p0YCkXlsKTts82bhVVnhX8g5XsIaunjqhhyoTaK7PoHBnRRQgYgjf+ZNYm
J0r3hf8aIttZb+ojiZx/IFR0CbCtAgMBAAECgYAH94rk2dE+267eGAlBgQGiCqZb
E/IL2cdpD5Nq11QrAVrV1kaAdpdlQzivVfebP7cRUuz5D+K+JIT6wby19xI9nksG
hwhNsiHsNet2Rf7Q+o4OREdWsZQYJB80CLDzMbRHwwQPZyF645WM/RTxbcIeISQe
Saq0rmEzktqFh0//YQJBAOVANfAo7+jIiOrXatD5pke6D4kSu9fvB1Feel9S0QSM
yI//zVpqKeEmGe7Fjo9ERzvLmeM/z7rehuQH0VeQ0aUCQQDXtMFtDnniLr1D8rSb
1nIJ7YgPX1kKjZDxa1z7XqCHvcaSdBIwUybsDJRg3v0HCG34dQxx1PWnSE6FZfLK
HqRpAkEAmgk59MNc59mOfdT+dam4+2reM2j+BEocbaUArnoT7W22+WKUlZLNzvVt
6UyezE7BWkEkhlgC+Pm6Qw+prp+k7QJBAJtsvOrNwXj+YJWzLfwT+ru4kY8yDsCR
3Nx3ldnyBw2H6qrgQ7LaV3NCZS+fvQXyRvr9q+fhoNfWO+3W1ahZh/ECQCKCXkee
F2s1R49KaoPHLF+WNSCtuIyfI6wqwAPlLt+pD/uQ/652vq4nbTpd217mOsnTU4IP
TwC3O+IBD610RdU=
-----END PRIVATE KEY-----
";

/// The Ed25519 private key of RFC 8463 A.1 (seed `nWGxne/9...`), wrapped in PKCS#8 v1 as
/// OpenSSL writes it: the fixed prefix `302e020100300506032b657004220420`, then the seed.
pub fn rfc8463_ed25519_pkcs8() -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend(
        B64.decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap(),
    );
    der
}

/// The key records of RFC 8463 A.2, the strings of each TXT record joined.
pub const RFC8463_ED25519_RECORD: &str =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
/// See [`RFC8463_ED25519_RECORD`]; a 1024-bit RSA key.
pub const RFC8463_RSA_RECORD: &str = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

/// The signed message of RFC 8463 A.3 (the message of RFC 6376 A.1 with an Ed25519 and an RSA
/// signature), lines ending in LF here; [`crlf`] it before use.
pub const RFC8463_SIGNED: &str = r"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
";

/// `text` with every LF turned into CRLF.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// A plain test message, CRLF line ends.
pub fn sample_message() -> Vec<u8> {
    crlf(
        "From: Alice <alice@example.com>\n\
         To: Bob <bob@example.net>\n\
         Subject: Lunch   on\n\tFriday?\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\n\
         Message-ID: <lunch@example.com>\n\
         \n\
         Hi Bob,\n\
         \n\
         shall we have lunch  on Friday?  \n\
         \n\
         Alice\n\
         \n\
         \n",
    )
}

/// Signing keys for both algorithms.
pub fn rsa_key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_pkcs8_pem(RSA_2048_PEM).unwrap())
}

/// The RFC 8463 Ed25519 key.
pub fn ed25519_key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_pkcs8_der(&rfc8463_ed25519_pkcs8()).unwrap())
}

/// An answer holding one TXT record.
pub fn txt(record: &str) -> Answer {
    Answer::Records {
        records: vec![Record::Txt(record.as_bytes().to_vec())],
        ttl: 300,
        canonical_name: "x".into(),
    }
}

/// Signs `message` and returns the signed message (the field prepended).
pub fn sign(config: SignerConfig, key: &Arc<SigningKey>, now: i64, message: &[u8]) -> Vec<u8> {
    let mut signer = Signer::new(config, key.clone(), now);
    signer.feed(message);
    let field = signer.finish().unwrap();
    let mut out = field.into_bytes();
    out.extend_from_slice(message);
    out
}

/// A config for `example.com`, selector `sel`, with the given canonicalizations.
pub fn config(header: Canon, body: Canon) -> SignerConfig {
    let mut c = SignerConfig::new("example.com", "sel");
    c.header_canon = header;
    c.body_canon = body;
    c
}

/// Verifies `message` fed in `chunks`, answering every key query with `dns(name)`.
pub fn verify_chunks(
    chunks: &[&[u8]],
    now: i64,
    dns: &dyn Fn(&str) -> Answer,
) -> Vec<SignatureResult> {
    let mut v = Verifier::new(VerifyLimits::default());
    for c in chunks {
        v.feed(c);
    }
    v.finish_body();
    for name in v.key_queries() {
        v.key_answer(&name, &dns(&name));
    }
    assert!(v.key_queries().is_empty(), "every query answered");
    v.results(now)
}

/// [`verify_chunks`] with the whole message in one piece.
pub fn verify(message: &[u8], now: i64, dns: &dyn Fn(&str) -> Answer) -> Vec<SignatureResult> {
    verify_chunks(&[message], now, dns)
}
