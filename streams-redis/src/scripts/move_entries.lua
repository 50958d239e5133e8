-- Many moves of move_entry.lua in one call, each on its own: a move that
-- fails (a target of another type, a server out of memory) reports its
-- error and writes nothing, and the others go on.
--
-- KEYS: per move, its source stream and its target (stream or schedule).
-- ARGV[1]: the number of moves. Then per move: group, entry id, fencing
-- consumer ('' for none), '1' to delete the source entry, 'stream' or
-- 'schedule', the delay in ms (schedule), the number of trims n, the
-- number of fields f, then n trims (kind, mode, value) and f name, value
-- pairs.
--
-- Returns one reply per move, in order: {'moved', new id or ''},
-- {'not_pending'}, {'owned_by', consumer} or {'error', message}.
local out = {}
local now = nil
local function clock()
  if not now then
    now = now_ms()
  end
  return now
end

-- The trims of a target stream after its add (the first, by length, went
-- inline in the XADD): an error reply or nil.
local function trims(key, at, n)
  for j = 0, n - 1 do
    local kind, mode, value = ARGV[at + 3 * j], ARGV[at + 3 * j + 1], ARGV[at + 3 * j + 2]
    local done
    if kind == 'MAXLEN' then
      done = redis.pcall('XTRIM', key, 'MAXLEN', mode, value)
    elseif kind == 'MAXAGE' then
      local minid = clock() - tonumber(value)
      if minid > 0 then
        done = redis.pcall('XTRIM', key, 'MINID', mode, string.format('%d', minid))
      end
    else
      return 'ERR unknown trim kind ' .. tostring(kind)
    end
    if type(done) == 'table' and done.err then
      return done.err
    end
  end
  return nil
end

local at = 2
for m = 1, tonumber(ARGV[1]) do
  local source, target = KEYS[2 * m - 1], KEYS[2 * m]
  local group, id, fence = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local delete, kind, delay = ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]
  local n, f = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7])
  local trims_at = at + 8
  local fields_at = trims_at + 3 * n
  at = fields_at + 2 * f

  local result = refusal_to_settle(source, group, id, fence)
  if not result then
    local fields = {}
    for i = fields_at, fields_at + 2 * f - 1 do
      fields[#fields + 1] = ARGV[i]
    end
    local written, new_id
    if kind == 'stream' then
      if n > 0 and ARGV[trims_at] == 'MAXLEN' then
        written = redis.pcall('XADD', target, 'MAXLEN', ARGV[trims_at + 1],
          ARGV[trims_at + 2], '*', unpack(fields))
        trims_at, n = trims_at + 3, n - 1
      else
        written = redis.pcall('XADD', target, '*', unpack(fields))
      end
      new_id = written
    else
      -- As move_entry.lua: the member carries where the entry came from.
      local member = {source, id}
      for _, v in ipairs(fields) do
        member[#member + 1] = v
      end
      written = redis.pcall('ZADD', target, clock() + tonumber(delay), cmsgpack.pack(member))
      new_id = ''
    end
    if type(written) == 'table' and written.err then
      result = {'error', written.err}
    else
      local trimmed = nil
      if kind == 'stream' then
        trimmed = trims(target, trims_at, n)
      end
      redis.call('XACK', source, group, id)
      if delete == '1' then
        redis.call('XDEL', source, id)
      end
      -- A trim that failed after the move is reported with the move done:
      -- the copy is written and the original acknowledged.
      if trimmed then
        result = {'moved', new_id, trimmed}
      else
        result = {'moved', new_id}
      end
    end
  end
  out[m] = result
end
return out
