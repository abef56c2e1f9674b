#!/usr/bin/env bash
# Submit a knnspark job to any Spark master, shipping the library with --py-files.
#
#   scripts/submit.sh [SPARK-SUBMIT OPTIONS...] JOB [JOB OPTIONS...]
#
#   scripts/submit.sh --master spark://host:7077 score --config conf/score.toml --run-date 2026-11-21
#   MASTER=yarn scripts/submit.sh --deploy-mode cluster --files conf/score.toml \
#       score --config score.toml --profile ...
#
# JOB is fit, tune, score, evaluate or join (jobs/JOB.py); the options after it are the job's
# (--config, --set, --profile, --run-date). The options before it go to spark-submit.
#
#   master        --master, else $MASTER, else local[*]
#   library       knnspark/ is zipped into ${KNNSPARK_BUILD_DIR:-build}/knnspark.zip and
#                 passed with --py-files (joined with any --py-files given here)
#   spark-submit  $SPARK_SUBMIT, else .venv/bin/spark-submit, else spark-submit on the PATH
#   logging       in client mode the driver uses conf/log4j2.properties
#
# The executors' Python needs numpy, pandas, pyarrow and hnswlib (not knnspark itself): set
# PYSPARK_PYTHON to an interpreter that has them on every node, or ship a packed virtual
# environment with --archives (see the README, "Running on a cluster").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

master="${MASTER:-local[*]}"
deploy_mode="client"
py_files=""
submit_args=()
while (($#)); do
    case "$1" in
        fit | tune | score | evaluate | join) break ;;
        -h | --help)
            usage
            exit 0
            ;;
        --master) master="$2"; shift 2 ;;
        --master=*) master="${1#*=}"; shift ;;
        --py-files) py_files="$2"; shift 2 ;;
        --py-files=*) py_files="${1#*=}"; shift ;;
        --deploy-mode) deploy_mode="$2"; submit_args+=("$1" "$2"); shift 2 ;;
        --deploy-mode=*) deploy_mode="${1#*=}"; submit_args+=("$1"); shift ;;
        # spark-submit's options without a value.
        --verbose | -v | --supervise) submit_args+=("$1"); shift ;;
        --*=*) submit_args+=("$1"); shift ;;
        -*)
            if (($# < 2)); then
                echo "error: spark-submit option $1 needs a value" >&2
                exit 2
            fi
            submit_args+=("$1" "$2")
            shift 2
            ;;
        *)
            echo "error: unknown job '$1'; choose one of fit, tune, score, evaluate, join" >&2
            exit 2
            ;;
    esac
done
if (($# == 0)); then
    echo "error: no job given; choose one of fit, tune, score, evaluate, join" >&2
    usage >&2
    exit 2
fi
job="$1"
shift

spark_submit="${SPARK_SUBMIT:-}"
if [[ -z "$spark_submit" ]]; then
    if [[ -x "$root/.venv/bin/spark-submit" ]]; then
        spark_submit="$root/.venv/bin/spark-submit"
    else
        spark_submit="spark-submit"
    fi
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

# Zip the package (sources only), to a temporary name first so that concurrent submissions
# never ship a half-written archive.
build_dir="${KNNSPARK_BUILD_DIR:-$root/build}"
mkdir -p "$build_dir"
zip_path="$build_dir/knnspark.zip"
"$python" - "$root/knnspark" "$zip_path.$$" <<'EOF'
import pathlib
import sys
import zipfile

source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            archive.write(path, path.relative_to(source.parent))
EOF
mv -f "$zip_path.$$" "$zip_path"

log_options=()
if [[ "$deploy_mode" == "client" && -f "$root/conf/log4j2.properties" ]]; then
    log_options=(--driver-java-options "-Dlog4j2.configurationFile=file:$root/conf/log4j2.properties")
fi

exec "$spark_submit" \
    --master "$master" \
    --py-files "$zip_path${py_files:+,$py_files}" \
    ${log_options[@]+"${log_options[@]}"} \
    ${submit_args[@]+"${submit_args[@]}"} \
    "$root/jobs/$job.py" "$@"
