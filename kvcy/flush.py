"""Writing a memtable to a level-0 table (LevelDB's BuildTable).

The table is written under its final name, synced and closed before the
caller records it in the MANIFEST; until then it is an orphan that the next
open deletes, so a crash mid-flush loses nothing (the WAL still holds the
data).  Every entry is kept: a flush drops nothing, so snapshots and
recovery see exactly what the memtable held.
"""
from kvcy import filename
from kvcy._table_builder import TableBuilder
from kvcy.version_edit import FileMetaData


def write_level0_table(dbpath, env, options, mem, number):
    """Write mem to table `number`; return its FileMetaData (None if mem is empty)."""
    if len(mem) == 0:
        return None
    path = filename.table_file_name(dbpath, number)
    file = env.new_writable_file(path)
    try:
        builder = TableBuilder(file, options, path)
        builder.add_memtable(mem)
        size = builder.finish()
        file.sync()
    except BaseException:
        file.close()
        try:
            env.remove_file(path)
        except Exception:
            pass
        raise
    file.close()
    return FileMetaData(number, size, builder.props.smallest, builder.props.largest)
