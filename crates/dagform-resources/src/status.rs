//! What `status` shows of live objects: the typed views kinds report through `inspect`.
