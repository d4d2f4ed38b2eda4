#!/bin/sh
# CGI for busybox httpd: reads the counter from redis with nothing but
# busybox `nc`, speaking the redis protocol (RESP) by hand, and renders a page.
# busybox httpd runs /cgi-bin/index.cgi for "/" when there is no index.html.
host=${REDIS_HOST:-redis}
port=${REDIS_PORT:-6379}
pw=$(cat /run/secrets/redis_password 2>/dev/null)

# AUTH, GET visits, QUIT (redis closes the connection after QUIT, so nc ends).
reply=$(printf '*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$6\r\nvisits\r\n*1\r\n$4\r\nQUIT\r\n' \
  "${#pw}" "$pw" | nc -w 2 "$host" "$port" 2>&1 | tr -d '\r')
visits=$(printf '%s\n' "$reply" | awk '/^\$-1/ { print 0; exit } /^\$/ { getline; print; exit }')

echo "Content-Type: text/html; charset=utf-8"
echo
if [ -n "$visits" ]; then
  status="redis at $host:$port says <b>visits = $visits</b>"
else
  status="could not read the counter from redis at $host:$port: $(printf '%s\n' "$reply" | head -n 1 | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')"
fi
cat <<HTML
<!doctype html>
<html><head><title>sstack example</title><meta http-equiv="refresh" content="2"></head>
<body>
<h1>sstack example</h1>
<p>$status</p>
<p>Served by busybox httpd on host <code>$(hostname)</code>; the page reloads every 2 seconds.</p>
</body></html>
HTML
