#!/bin/sh
# Builds the root filesystem tarball of a stand-in for the `nginx:stable-alpine` image, for tests
# that run the Pulp auth proxy in a container: this machine cannot pull from public registries
# (LAB.md), so the image is made from this machine's own Debian nginx (the binary, its shared
# libraries, and an nginx.conf laid out like the official image's: `include
# /etc/nginx/conf.d/*.conf`, nothing else listening). `podman import` turns it into an image.
#   usage: nginx-stand-in.sh OUT.tar
set -eu
out=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
r="$t/root"
mkdir -p "$r/usr/sbin" "$r/etc/nginx/conf.d" "$r/var/log/nginx" "$r/var/lib/nginx" \
  "$r/var/cache/nginx" "$r/run" "$r/tmp" "$r/dev" "$r/proc" "$r/sys"
chmod 1777 "$r/tmp"
cp /usr/sbin/nginx "$r/usr/sbin/nginx"
for lib in $(ldd /usr/sbin/nginx | awk '/=>/ {print $3} /^\t\// {print $1}'); do
  mkdir -p "$r$(dirname "$lib")"
  cp -L "$lib" "$r$lib"
done
# the loader is looked up as /lib64/ld-linux-x86-64.so.2 (a symlink into /lib on Debian)
[ -e "$r/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$r/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"; }
cp /etc/nginx/mime.types "$r/etc/nginx/mime.types"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
cat > "$r/etc/nginx/nginx.conf" <<'CONF'
user nobody nogroup;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path /var/cache/nginx/body;
    proxy_temp_path /var/cache/nginx/proxy;
    fastcgi_temp_path /var/cache/nginx/fastcgi;
    uwsgi_temp_path /var/cache/nginx/uwsgi;
    scgi_temp_path /var/cache/nginx/scgi;
    include /etc/nginx/conf.d/*.conf;
}
CONF
# the official image's default site (replaced by the proxy's conf through a bind mount)
printf 'server {\n    listen 80;\n    location / { return 200 "stand-in default\\n"; }\n}\n' > "$r/etc/nginx/conf.d/default.conf"
mkdir -p "$(dirname "$out")"
tar -C "$r" -cf "$out.tmp" .
mv "$out.tmp" "$out"
