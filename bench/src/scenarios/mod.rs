pub mod fullsync;
pub mod lag;
pub mod realtime;
pub mod s3_put_get;
pub mod scale;
pub mod storage_append;
