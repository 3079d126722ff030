# Reads `packer build -machine-readable` output (timestamp,target,type,data... with commas inside data
# written as %!(PACKER_COMMA) and newlines as \n): shows the `ui` messages as Packer would have printed
# them and collects the `artifact,<n>,id` values that name AMIs. POSIX awk only: busybox awk in the
# hashicorp/packer image, mawk or gawk elsewhere. fflush() keeps the pod log live during long builds.
#
# At the end it writes the termination message: the AMIs as `region:ami-id`, comma-joined, then
# `commit=<sha>` on a second line when the shell passed a commit (-v commit=...). Without an AMI it
# writes nothing at all: the hook reads an empty message as "no artifact", whatever the commit.
function decode(text) {
    gsub(/%!\(PACKER_COMMA\)/, ",", text)
    gsub(/\\n/, "\n", text)
    gsub(/\\r/, "\r", text)
    return text
}
function data(line, skip) {
    while (skip-- > 0) sub(/^[^,]*,/, "", line)
    return line
}
BEGIN { FS = ","; ids = "" }
$1 !~ /^[0-9]+$/ { print; fflush(); next }
$3 == "ui" { print decode(data($0, 4)); fflush(); next }
$3 == "artifact" && $5 == "id" {
    count = split(decode(data($0, 5)), parts, ",")
    for (i = 1; i <= count; i++) {
        if (parts[i] ~ /^[a-z][a-z0-9-]*:ami-[0-9a-f]+$/ && !(parts[i] in seen)) {
            seen[parts[i]] = 1
            ids = ids (ids == "" ? "" : ",") parts[i]
        }
    }
}
END {
    if (ids != "") {
        if (commit != "") ids = ids "\ncommit=" commit
        printf "%s", ids > ENVIRON["TERMINATION_LOG"]
        close(ENVIRON["TERMINATION_LOG"])
    }
}
