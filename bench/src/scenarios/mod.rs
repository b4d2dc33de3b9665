pub mod storage_append;
