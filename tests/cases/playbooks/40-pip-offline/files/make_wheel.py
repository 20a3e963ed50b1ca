# Writes a minimal pure-Python wheel (corpuspkg 1.0) into the folder given as argv[1], so the pip
# case installs from a local folder with --no-index: nothing is downloaded.
import base64, hashlib, os, sys, zipfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
files = {
    "corpuspkg/__init__.py": "VERSION = '1.0'\n",
    "corpuspkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: corpuspkg\nVersion: 1.0\n",
    "corpuspkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-corpus\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append("corpuspkg-1.0.dist-info/RECORD,,")
files["corpuspkg-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(os.path.join(out, "corpuspkg-1.0-py3-none-any.whl"), "w") as z:
    for name, text in files.items():
        z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
