//! stub: work in progress
