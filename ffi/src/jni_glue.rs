//! JNI glue for the Hadoop FileSystem in `ffi/java` (class
//! `io.eddy.hadoop.NativeEddy`). Java holds the same registry handles as C
//! (as `long`s); errors become Java exceptions (`FileNotFoundException`,
//! Hadoop's `FileAlreadyExistsException`, else `IOException` with the Eddy
//! code); no panic crosses into the JVM.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use eddy_client::{
    ClientError, ClientOptions, CreateOptions, EddyCode, FileSystem, OpenOptions, pb,
};
use jni::JNIEnv;
use jni::objects::{JByteArray, JByteBuffer, JClass, JLongArray, JObject, JString};
use jni::sys::{jboolean, jint, jlong, jlongArray, jobjectArray};

use crate::{CLIENTS, Client, FILES, FileObj, runtime};

/// An error on its way to Java: the exception class and message.
struct JErr(&'static str, String);

impl From<ClientError> for JErr {
    fn from(e: ClientError) -> Self {
        let class = match e.code() {
            EddyCode::NotFound => "java/io/FileNotFoundException",
            EddyCode::AlreadyExists => "org/apache/hadoop/fs/FileAlreadyExistsException",
            // What HDFS throws for both (Spark and Hive recognise it).
            EddyCode::PermissionDenied | EddyCode::Unauthenticated => {
                "org/apache/hadoop/security/AccessControlException"
            }
            _ => "java/io/IOException",
        };
        JErr(class, e.to_string())
    }
}

impl From<crate::Fail> for JErr {
    fn from(f: crate::Fail) -> Self {
        io(f.1)
    }
}

impl From<jni::errors::Error> for JErr {
    fn from(e: jni::errors::Error) -> Self {
        JErr("java/io/IOException", format!("JNI: {e}"))
    }
}

fn io(msg: impl Into<String>) -> JErr {
    JErr("java/io/IOException", msg.into())
}

/// Runs a native method: a failure or panic becomes a pending Java
/// exception and `fallback` is returned.
fn run<T>(env: &mut JNIEnv, fallback: T, f: impl FnOnce(&mut JNIEnv) -> Result<T, JErr>) -> T {
    let r = catch_unwind(AssertUnwindSafe(|| f(env)))
        .unwrap_or_else(|_| Err(io("internal error in libeddy (a bug): a panic was caught")));
    match r {
        Ok(v) => v,
        Err(JErr(class, msg)) => {
            if !env.exception_check().unwrap_or(false) {
                let _ = env.throw_new(class, msg);
            }
            fallback
        }
    }
}

fn client(h: jlong) -> Result<Arc<Client>, JErr> {
    CLIENTS
        .get(h as usize as *const std::ffi::c_void, "client")
        .map_err(|_| io("the Eddy client is closed"))
}

fn file(h: jlong) -> Result<Arc<FileObj>, JErr> {
    FILES
        .get(h as usize as *const std::ffi::c_void, "file")
        .map_err(|_| io("the stream is closed"))
}

fn path(env: &mut JNIEnv, s: &JString) -> Result<String, JErr> {
    Ok(env.get_string(s)?.into())
}

/// A status as Java's `long[]`: id, length, block size, mtime, mode,
/// is_dir, complete, persisted, percent cached.
fn status_longs(s: &pb::FileStatus) -> [i64; 9] {
    [
        s.id as i64,
        s.length as i64,
        s.block_size as i64,
        s.mtime_ms,
        i64::from(s.mode),
        i64::from(s.is_dir),
        i64::from(s.complete),
        i64::from(s.persisted),
        i64::from(s.percent_cached),
    ]
}

fn longs<'a>(env: &mut JNIEnv<'a>, v: &[i64]) -> Result<JLongArray<'a>, JErr> {
    let a = env.new_long_array(v.len() as i32)?;
    env.set_long_array_region(&a, 0, v)?;
    Ok(a)
}

/// `Object[2]` holding `a` and `b` (how list and blocks answer).
fn pair<'a>(env: &mut JNIEnv<'a>, a: &JObject, b: &JObject) -> Result<jobjectArray, JErr> {
    let out = env.new_object_array(2, "java/lang/Object", JObject::null())?;
    env.set_object_array_element(&out, 0, a)?;
    env.set_object_array_element(&out, 1, b)?;
    Ok(out.into_raw())
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_connect(
    mut env: JNIEnv,
    _c: JClass,
    master: JString,
    short_circuit: jboolean,
    timeout_ms: jlong,
    metadata_cache_ms: jlong,
    token: JString,
    tls_ca: JString,
    tls_cert: JString,
    tls_key: JString,
) -> jlong {
    run(&mut env, 0, |env| {
        let addr = path(env, &master)?;
        // `eddy.security.token`, else what the environment gives.
        let mut credentials = eddy_client::Credentials::from_config(&Default::default())?;
        let token = path(env, &token)?;
        if !token.trim().is_empty() {
            credentials.token = Some(token.trim().to_string());
        }
        // Empty strings when unset (the Java side passes "").
        let tls = crate::connect::tls_files::Paths {
            ca: path(env, &tls_ca)?,
            cert: path(env, &tls_cert)?,
            key: path(env, &tls_key)?,
        };
        let opts = ClientOptions {
            credentials,
            short_circuit: short_circuit != 0,
            // The Java side refuses values below 1.
            timeout: std::time::Duration::from_millis(timeout_ms.max(1) as u64),
            // The Java side refuses values below 0.
            metadata_ttl: std::time::Duration::from_millis(metadata_cache_ms.max(0) as u64),
            tls: tls.load()?,
            ..Default::default()
        };
        let fs = runtime().block_on(FileSystem::connect_with(&addr, opts))?;
        Ok(CLIENTS.add(Client { fs }) as jlong)
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_disconnect(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
) {
    run(&mut env, (), |_| {
        let _ = CLIENTS.take(h as usize as *const std::ffi::c_void, "client");
        Ok(())
    })
}

/// `long[9]` (see `status_longs`); FileNotFoundException when absent.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_stat(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
) -> jlongArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        let s = runtime().block_on(c.fs.stat(p))?;
        Ok(longs(env, &status_longs(&s))?.into_raw())
    })
}

/// `Object[2]`: `String[]` names and `long[]` statuses (9 per entry).
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_list(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
) -> jobjectArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        let entries = runtime().block_on(c.fs.list(p))?;
        let names =
            env.new_object_array(entries.len() as i32, "java/lang/String", JObject::null())?;
        let mut flat = Vec::with_capacity(entries.len() * 9);
        for (i, e) in entries.iter().enumerate() {
            let s = env.new_string(String::from_utf8_lossy(&e.name))?;
            env.set_object_array_element(&names, i as i32, s)?;
            flat.extend_from_slice(&status_longs(e));
        }
        let stats = longs(env, &flat)?;
        pair(env, &names, &stats)
    })
}

/// 0: done. Codes for "already there", "missing parent", ... are exceptions.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_mkdirs(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
) -> jboolean {
    run(&mut env, 0, |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        match runtime().block_on(c.fs.mkdir(&p, true)) {
            Ok(_) => Ok(1),
            // mkdirs of an existing directory is success in Hadoop.
            Err(e) if e.code() == EddyCode::AlreadyExists => {
                let st = runtime().block_on(c.fs.stat(&p))?;
                if st.is_dir {
                    Ok(1)
                } else {
                    Err(JErr(
                        "org/apache/hadoop/fs/FileAlreadyExistsException",
                        format!("{p} exists and is a file"),
                    ))
                }
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// false when `path` does not exist (Hadoop's contract).
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_delete(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
    recursive: jboolean,
) -> jboolean {
    run(&mut env, 0, |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        match runtime().block_on(c.fs.delete(&p, recursive != 0)) {
            Ok(()) => Ok(1),
            Err(e) if e.code() == EddyCode::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_rename(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    src: JString,
    dst: JString,
) {
    run(&mut env, (), |env| {
        let c = client(h)?;
        let (s, d) = (path(env, &src)?, path(env, &dst)?);
        runtime().block_on(c.fs.rename(s, d))?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_open(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
    read_type: jint,
) -> jlong {
    run(&mut env, 0, |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        let read_type = crate::read_type_of(read_type)?;
        let r = runtime().block_on(c.fs.open(p, &OpenOptions { read_type }))?;
        Ok(FILES.add(FileObj::Reader {
            reader: Arc::new(r),
            pos: Mutex::new(0),
        }) as jlong)
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_create(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
    write_type: jint,
    block_size: jlong,
) -> jlong {
    run(&mut env, 0, |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        let write_type = crate::write_type_of(write_type)?;
        let o = CreateOptions {
            write_type,
            block_size: block_size.max(0) as u64,
            ..Default::default()
        };
        let w = runtime().block_on(c.fs.create(p, &o))?;
        Ok(FILES.add(FileObj::Writer(Mutex::new(Some(Box::new(w))))) as jlong)
    })
}

fn reader(h: jlong) -> Result<Arc<eddy_client::FileReader>, JErr> {
    match &*file(h)? {
        FileObj::Reader { reader, .. } => Ok(reader.clone()),
        FileObj::Writer(_) => Err(io("the stream was opened for writing")),
    }
}

/// Reads up to `len` bytes at `pos` into `buf[off..]`; -1 at the end.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_pread(
    mut env: JNIEnv,
    _c: JClass,
    f: jlong,
    pos: jlong,
    buf: JByteArray,
    off: jint,
    len: jint,
) -> jint {
    run(&mut env, -1, |env| {
        let r = reader(f)?;
        if pos < 0
            || off < 0
            || len < 0
            || off
                .checked_add(len)
                .is_none_or(|e| e > env.get_array_length(&buf).unwrap_or(0))
        {
            return Err(JErr(
                "java/lang/IndexOutOfBoundsException",
                format!("pos {pos}, off {off}, len {len}"),
            ));
        }
        if len == 0 {
            return Ok(0);
        }
        let mut tmp = vec![0u8; len as usize];
        let n = runtime().block_on(r.read_at(pos as u64, &mut tmp))?;
        if n == 0 {
            return Ok(-1);
        }
        // SAFETY: i8 and u8 have the same size and alignment.
        let signed = unsafe { std::slice::from_raw_parts(tmp.as_ptr().cast::<i8>(), n) };
        env.set_byte_array_region(&buf, off, signed)?;
        Ok(n as jint)
    })
}

/// Reads up to `len` bytes at `pos` straight into a direct ByteBuffer's
/// memory (from the mapped block when short-circuit); -1 at the end.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_preadDirect(
    mut env: JNIEnv,
    _c: JClass,
    f: jlong,
    pos: jlong,
    buf: JByteBuffer,
    off: jint,
    len: jint,
) -> jint {
    run(&mut env, -1, |env| {
        let r = reader(f)?;
        let base = env.get_direct_buffer_address(&buf)?;
        let cap = env.get_direct_buffer_capacity(&buf)?;
        if pos < 0
            || off < 0
            || len < 0
            || (off as usize)
                .checked_add(len as usize)
                .is_none_or(|e| e > cap)
        {
            return Err(JErr(
                "java/lang/IndexOutOfBoundsException",
                format!("pos {pos}, off {off}, len {len}"),
            ));
        }
        if len == 0 {
            return Ok(0);
        }
        // SAFETY: the JVM guarantees a direct buffer's memory is `cap` bytes
        // at `base` while the buffer is reachable (the caller holds it), and
        // `off + len <= cap` is checked above.
        let dst = unsafe { std::slice::from_raw_parts_mut(base.add(off as usize), len as usize) };
        let n = runtime().block_on(r.read_at(pos as u64, dst))?;
        Ok(if n == 0 { -1 } else { n as jint })
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_length(
    mut env: JNIEnv,
    _c: JClass,
    f: jlong,
) -> jlong {
    run(&mut env, -1, |_| Ok(reader(f)?.len() as jlong))
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_write(
    mut env: JNIEnv,
    _c: JClass,
    f: jlong,
    buf: JByteArray,
    off: jint,
    len: jint,
) {
    run(&mut env, (), |env| {
        let obj = file(f)?;
        let FileObj::Writer(w) = &*obj else {
            return Err(io("the stream was opened for reading"));
        };
        if off < 0
            || len < 0
            || off
                .checked_add(len)
                .is_none_or(|e| e > env.get_array_length(&buf).unwrap_or(0))
        {
            return Err(JErr(
                "java/lang/IndexOutOfBoundsException",
                format!("off {off}, len {len}"),
            ));
        }
        let mut tmp = vec![0i8; len as usize];
        env.get_byte_array_region(&buf, off, &mut tmp)?;
        // SAFETY: i8 and u8 have the same size and alignment.
        let bytes = unsafe { std::slice::from_raw_parts(tmp.as_ptr().cast::<u8>(), tmp.len()) };
        let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
        let w = g.as_mut().ok_or_else(|| io("the stream is closed"))?;
        runtime().block_on(w.write(bytes))?;
        Ok(())
    })
}

/// Closes a stream (a writer completes its file). Closing twice is a no-op.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_close(mut env: JNIEnv, _c: JClass, f: jlong) {
    run(&mut env, (), |_| {
        let Ok(obj) = FILES.take(f as usize as *const std::ffi::c_void, "file") else {
            return Ok(());
        };
        let _guard = runtime().enter();
        if let FileObj::Writer(w) = &*obj {
            let w = w.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = w {
                runtime().block_on(w.close())?;
            }
        }
        Ok(())
    })
}

/// Block locations of `[start, start+len)`: `Object[2]` = `long[]`
/// (offset, length per block) and `String[]` (comma-separated hosts).
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_eddy_hadoop_NativeEddy_blocks(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    p: JString,
    start: jlong,
    len: jlong,
) -> jobjectArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let c = client(h)?;
        let p = path(env, &p)?;
        let r = runtime().block_on(c.fs.master().file_blocks(p))?;
        let (start, end) = (
            start.max(0) as u64,
            start.max(0).saturating_add(len.max(0)) as u64,
        );
        let picked: Vec<&pb::FileBlock> = r
            .blocks
            .iter()
            .filter(|b| b.offset < end && b.offset + b.length > start)
            .collect();
        let mut ranges = Vec::with_capacity(picked.len() * 2);
        let hosts =
            env.new_object_array(picked.len() as i32, "java/lang/String", JObject::null())?;
        for (i, b) in picked.iter().enumerate() {
            ranges.push(b.offset as i64);
            ranges.push(b.length as i64);
            let mut hs: Vec<&str> = b.locations.iter().map(|l| l.host.as_str()).collect();
            hs.dedup();
            let s = env.new_string(hs.join(","))?;
            env.set_object_array_element(&hosts, i as i32, s)?;
        }
        let ranges = longs(env, &ranges)?;
        pair(env, &ranges, &hosts)
    })
}
