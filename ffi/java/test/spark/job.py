"""A PySpark job in local mode against a real Eddy cluster.

Run by cli/tests/hadoop.rs with the pyspark venv's python:
    job.py MASTER EDDY_HADOOP_JAR LIBDIR LOCALDIR
Writes a DataFrame as Parquet and CSV to eddy:// and to a local path, reads
both back, aggregates, and checks the answers agree; then reads the dataset
the test put in Eddy's root mount (eddy://.../lake) twice. Prints RESULT
lines for the test to check; exits non-zero on any mismatch.
"""
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

master, jar, libdir, localdir = sys.argv[1:5]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("eddy-test")
    .config("spark.jars", jar)
    .config("spark.driver.extraLibraryPath", libdir)
    .config("spark.executor.extraLibraryPath", libdir)
    .config("spark.hadoop.fs.eddy.impl", "io.eddy.hadoop.EddyFileSystem")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.shuffle.partitions", "4")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")

df = spark.range(0, 200000).selectExpr("id", "id % 7 as k", "cast(id * 3 as string) as s")
eddy = f"eddy://{master}/out"
local = f"file://{localdir}/out"


def answer(path, fmt):
    if fmt == "csv":
        back = spark.read.option("header", "true").option("inferSchema", "true").csv(path)
    else:
        back = spark.read.parquet(path)
    rows = back.groupBy("k").agg(F.sum("id").alias("total"), F.count("*").alias("n")).orderBy("k").collect()
    return [(r["k"], r["total"], r["n"]) for r in rows]


for fmt in ("parquet", "csv"):
    for base in (eddy, local):
        w = df.write.mode("overwrite")
        if fmt == "csv":
            w = w.option("header", "true")
        getattr(w, fmt)(f"{base}/{fmt}")
    a, b = answer(f"{eddy}/{fmt}", fmt), answer(f"{local}/{fmt}", fmt)
    if a != b or len(a) != 7:
        print(f"MISMATCH {fmt}: {a} vs {b}", file=sys.stderr)
        sys.exit(1)
    print(f"RESULT {fmt} ok {sum(n for _, _, n in a)}")

# A dataset already in the under-storage of the root mount, read twice: the
# second read is served from the workers' cache.
for run in (1, 2):
    lake = spark.read.option("header", "true").csv(f"eddy://{master}/lake")
    print(f"RESULT lake run {run} rows {lake.count()} sum {lake.agg(F.sum(F.col('v').cast('long'))).first()[0]}")
spark.stop()
