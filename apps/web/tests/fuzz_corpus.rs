//! The committed fuzz corpora of the receive codec targets, replayed on stable through the
//! fuzz targets' own bodies (`fuzz/src/`, included by path). RELIABILITY.md, "Fuzzing".

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/receive_codec.rs"]
mod receive_codec;
#[path = "../../../fuzz/src/receive_ndjson.rs"]
mod receive_ndjson;

/// What `receive_codec` calls `super::codec`: here the web app's own module.
mod codec {
    pub use vqs_axum::vqs_api::{ReceiveFormat, encode};
}

#[test]
fn receive_codec_corpus() {
    corpus::replay("receive_codec", receive_codec::check);
}

#[test]
fn receive_ndjson_corpus() {
    corpus::replay("receive_ndjson", receive_ndjson::check);
}
