# The deploy root's directories, owned by the app user (INCOMING by the SSH user), 0755.
# env: DIRS (one a line) INCOMING APP_USER GROUP. Out: `changed` and the paths fixed, or `no change`.
changed=()
ensure() {  # DIR OWNER GROUP
  if [ "$(stat -c %U:%G:%a "$1" 2>/dev/null)" != "$2:$3:755" ]; then
    sudo -n install -d -o "$2" -g "$3" -m 0755 "$1"
    changed+=("$1")
  fi
}
while IFS= read -r dir; do ensure "$dir" "$APP_USER" "$GROUP"; done <<< "$DIRS"
ensure "$INCOMING" "$(id -un)" "$(id -gn)"
if [ ${#changed[@]} -gt 0 ]; then echo changed; printf '%s\n' "${changed[@]}"; else echo "no change"; fi
