package io.eddy.hadoop;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.lang.ref.Cleaner;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;

/**
 * Hadoop FileSystem for {@code eddy://host:port/path}, backed by Eddy's Rust
 * client through JNI (libeddy). Register it with
 * {@code fs.eddy.impl=io.eddy.hadoop.EddyFileSystem}.
 *
 * <p>Configuration: {@code eddy.master.address} (used when the URI has no
 * authority; default 127.0.0.1:19998), {@code eddy.user.file.readtype.default}
 * (CACHE, NO_CACHE, CACHE_PROMOTE), {@code eddy.user.file.writetype.default}
 * (MUST_CACHE, CACHE_THROUGH, THROUGH; default CACHE_THROUGH so Spark output
 * survives the cache), {@code eddy.user.block.size.bytes.default} (0: the
 * master's), {@code eddy.user.short.circuit.enabled} (true),
 * {@code eddy.user.network.timeout.ms} (60000: the longest one exchange with
 * the master or a worker may wait; past it the call throws an IOException
 * with code DEADLINE_EXCEEDED), {@code eddy.user.metadata.cache.ms} (1000: how
 * long an open may reuse a complete file's metadata without asking the
 * master, so how long another client's delete, rename or rewrite may go
 * unseen here; 0 caches nothing; this FileSystem's own changes are always
 * seen at once), {@code eddy.security.token} (a credential from {@code eddy
 * token create} for a master with authentication "token"; empty: EDDY_TOKEN,
 * EDDY_TOKEN_FILE or ~/.eddy/token; a refused one throws
 * AccessControlException),
 * {@code eddy.security.tls.ca} (a PEM CA bundle: dial the
 * master and workers over TLS, trusting what it signed; unset: plaintext),
 * {@code eddy.security.tls.cert} and {@code eddy.security.tls.key} (a PEM
 * client certificate and key for servers that require one) and
 * {@code eddy.native.library} (a path to libeddy.so instead of
 * java.library.path).
 */
public class EddyFileSystem extends FileSystem {
  static final Cleaner CLEANER = Cleaner.create();

  private URI uri;
  private Path workingDir = new Path("/");
  private long client;
  private Cleaner.Cleanable clientCleanable;
  private int readType;
  private int writeType;
  private long blockSize;

  @Override
  public String getScheme() {
    return "eddy";
  }

  @Override
  public void initialize(URI name, Configuration conf) throws IOException {
    super.initialize(name, conf);
    setConf(conf);
    NativeEddy.load(conf.get("eddy.native.library"));
    String master = name.getAuthority();
    if (master == null || master.isEmpty()) {
      master = conf.get("eddy.master.address", "127.0.0.1:19998");
    }
    readType = readType(conf.get("eddy.user.file.readtype.default", "CACHE"));
    writeType = writeType(conf.get("eddy.user.file.writetype.default", "CACHE_THROUGH"));
    blockSize = conf.getLong("eddy.user.block.size.bytes.default", 0);
    boolean shortCircuit = conf.getBoolean("eddy.user.short.circuit.enabled", true);
    long timeoutMs = conf.getLong("eddy.user.network.timeout.ms", 60000);
    if (timeoutMs < 1) {
      throw new IllegalArgumentException(
          "eddy.user.network.timeout.ms must be 1 or more, not " + timeoutMs);
    }
    long metadataCacheMs = conf.getLong("eddy.user.metadata.cache.ms", 1000);
    if (metadataCacheMs < 0) {
      throw new IllegalArgumentException(
          "eddy.user.metadata.cache.ms must be 0 or more, not " + metadataCacheMs);
    }
    String token = conf.getTrimmed("eddy.security.token", "");
    // TLS to the master and workers: the CA to trust (as [security]
    // tls_ca), and a client certificate for mutual TLS.
    String tlsCa = conf.getTrimmed("eddy.security.tls.ca", "");
    String tlsCert = conf.getTrimmed("eddy.security.tls.cert", "");
    String tlsKey = conf.getTrimmed("eddy.security.tls.key", "");
    client =
        NativeEddy.connect(
            master, shortCircuit, timeoutMs, metadataCacheMs, token, tlsCa, tlsCert, tlsKey);
    long handle = client;
    clientCleanable = CLEANER.register(this, () -> NativeEddy.disconnect(handle));
    uri = URI.create("eddy://" + master);
  }

  private static int readType(String t) throws IOException {
    switch (t.toUpperCase()) {
      case "CACHE":
        return 0;
      case "NO_CACHE":
        return 1;
      case "CACHE_PROMOTE":
        return 2;
      default:
        throw new IOException("eddy.user.file.readtype.default: unknown read type " + t);
    }
  }

  private static int writeType(String t) throws IOException {
    switch (t.toUpperCase()) {
      case "MUST_CACHE":
        return 1;
      case "CACHE_THROUGH":
        return 2;
      case "THROUGH":
        return 3;
      default:
        throw new IOException("eddy.user.file.writetype.default: unknown write type " + t);
    }
  }

  @Override
  public URI getUri() {
    return uri;
  }

  /** The Eddy path ("/a/b") of a Hadoop path, relative ones against the working directory. */
  private String eddyPath(Path p) {
    Path abs = p.isAbsolute() ? p : new Path(workingDir, p);
    String s = abs.toUri().getPath();
    return s.isEmpty() ? "/" : s;
  }

  private FileStatus toStatus(long[] s, int i, Path path) {
    boolean dir = s[i + 5] != 0;
    return new FileStatus(
        dir ? 0 : s[i + 1],
        dir,
        1,
        s[i + 2],
        s[i + 3],
        s[i + 3],
        new FsPermission((short) s[i + 4]),
        null,
        null,
        makeQualified(path));
  }

  @Override
  public FSDataInputStream open(Path f, int bufferSize) throws IOException {
    long st[] = NativeEddy.stat(client, eddyPath(f));
    if (st[5] != 0) {
      throw new FileNotFoundException(f + " is a directory");
    }
    return new FSDataInputStream(new EddyInputStream(NativeEddy.open(client, eddyPath(f), readType)));
  }

  @Override
  public FSDataOutputStream create(
      Path f,
      FsPermission permission,
      boolean overwrite,
      int bufferSize,
      short replication,
      long blockSize,
      Progressable progress)
      throws IOException {
    String p = eddyPath(f);
    FileStatus existing = statusOrNull(f);
    if (existing != null) {
      if (existing.isDirectory()) {
        throw new FileAlreadyExistsException(f + " is a directory");
      }
      if (!overwrite) {
        throw new FileAlreadyExistsException(f + " already exists");
      }
      NativeEddy.delete(client, p, false);
    }
    Path parent = f.getParent();
    if (parent != null) {
      mkdirs(parent);
    }
    long bs = this.blockSize > 0 ? this.blockSize : 0;
    return new FSDataOutputStream(new EddyOutputStream(NativeEddy.create(client, p, writeType, bs)), statistics);
  }

  @Override
  public FSDataOutputStream append(Path f, int bufferSize, Progressable progress) throws IOException {
    throw new IOException("append is not supported: Eddy files are write-once (" + f + ")");
  }

  private FileStatus statusOrNull(Path f) throws IOException {
    try {
      return getFileStatus(f);
    } catch (FileNotFoundException e) {
      return null;
    }
  }

  @Override
  public boolean rename(Path src, Path dst) throws IOException {
    FileStatus s = statusOrNull(src);
    if (s == null) {
      return false;
    }
    FileStatus d = statusOrNull(dst);
    if (d != null && d.isDirectory()) {
      dst = new Path(dst, src.getName());
      d = statusOrNull(dst);
    }
    if (d != null) {
      return false;
    }
    Path parent = dst.getParent();
    if (parent != null) {
      FileStatus ps = statusOrNull(parent);
      if (ps == null || !ps.isDirectory()) {
        return false;
      }
    }
    if (eddyPath(src).equals(eddyPath(dst))) {
      return true;
    }
    NativeEddy.rename(client, eddyPath(src), eddyPath(dst));
    return true;
  }

  @Override
  public boolean delete(Path f, boolean recursive) throws IOException {
    return NativeEddy.delete(client, eddyPath(f), recursive);
  }

  @Override
  public FileStatus[] listStatus(Path f) throws IOException {
    FileStatus st = getFileStatus(f);
    if (!st.isDirectory()) {
      return new FileStatus[] {st};
    }
    Object[] r = NativeEddy.list(client, eddyPath(f));
    String[] names = (String[]) r[0];
    long[] stats = (long[]) r[1];
    List<FileStatus> out = new ArrayList<>(names.length);
    for (int i = 0; i < names.length; i++) {
      out.add(toStatus(stats, i * 9, new Path(f, names[i])));
    }
    return out.toArray(new FileStatus[0]);
  }

  @Override
  public void setWorkingDirectory(Path dir) {
    workingDir = dir.isAbsolute() ? dir : new Path(workingDir, dir);
  }

  @Override
  public Path getWorkingDirectory() {
    return workingDir;
  }

  @Override
  public boolean mkdirs(Path f, FsPermission permission) throws IOException {
    return NativeEddy.mkdirs(client, eddyPath(f));
  }

  @Override
  public FileStatus getFileStatus(Path f) throws IOException {
    return toStatus(NativeEddy.stat(client, eddyPath(f)), 0, f);
  }

  @Override
  public BlockLocation[] getFileBlockLocations(FileStatus file, long start, long len) throws IOException {
    if (file == null) {
      return null;
    }
    if (start < 0 || len < 0) {
      throw new IllegalArgumentException("negative start or length");
    }
    if (file.isDirectory() || file.getLen() <= start) {
      return new BlockLocation[0];
    }
    Object[] r = NativeEddy.blocks(client, eddyPath(file.getPath()), start, len);
    long[] ranges = (long[]) r[0];
    String[] hosts = (String[]) r[1];
    BlockLocation[] out = new BlockLocation[hosts.length];
    for (int i = 0; i < hosts.length; i++) {
      String[] h = hosts[i].isEmpty() ? new String[0] : hosts[i].split(",");
      out[i] = new BlockLocation(h, h, ranges[2 * i], ranges[2 * i + 1]);
    }
    return out;
  }

  @Override
  public void close() throws IOException {
    try {
      super.close();
    } finally {
      if (clientCleanable != null) {
        clientCleanable.clean();
      }
    }
  }
}
